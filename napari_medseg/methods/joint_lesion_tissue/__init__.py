"""Joint brain lesion + tissue segmentation from task-specific hetero-modal datasets
(Dorent et al. 2019). Started under issue 6: labels, phantom data, the hetero-modal
network, the losses and the training iteration; no widget yet."""
