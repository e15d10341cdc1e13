"""The verifier: a second stage that rescores each tomogram's top candidates on full-resolution patches.

- `patches` (pure numpy): patches cut around points of the model's grid, the network's window, training views;
- `rescore` (pure numpy): the verified score, detector score x verifier probability;
- `store`: local scoring's held-out candidates and patches on disk, and their labels;
- `net` (`PatchNet`), `train` (`train_net`), `verifier` (`Verifier`, the run's `verifier.pt`) and `folds` (a network
  per fold, and the out-of-fold rescoring) import torch: import them where they are used.
"""
