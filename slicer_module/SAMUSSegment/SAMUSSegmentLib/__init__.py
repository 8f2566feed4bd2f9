"""Slicer-free core of the SAMUSSegment module.

Everything here uses only the standard library and numpy, so it runs in Slicer's
Python and in plain pytest alike. Nothing in this package may import slicer, vtk or qt.
"""
