"""Thin adapters between the MRML scene and SAMUSSegmentLib (needs Slicer; main thread only).

- sources: what a frame is (K slice of a volume, or item of a cine sequence), RAS <-> IJK of
  clicks, showing a frame, and a snapshot of all frames for upload;
- masks: the scene layers under SAMUSSegmentLib.batched.BatchedMasks (a volume's segmentation,
  or the items of a cine's segmentation sequence), exported and imported once per step.
"""
