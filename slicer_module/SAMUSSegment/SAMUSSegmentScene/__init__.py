"""Thin adapters between the MRML scene and SAMUSSegmentLib (needs Slicer; main thread only).

- sources: what a frame is (K slice of a volume, or item of a cine sequence), RAS <-> IJK of
  clicks, showing a frame, and a snapshot of all frames for upload;
- masks: reading and writing one frame of a segment (the mask-store interface of
  SAMUSSegmentLib.frames.ArrayMaskStore).
"""
