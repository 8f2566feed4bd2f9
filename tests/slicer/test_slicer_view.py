"""How the Red view shows a frame: the module's slice orientation and frame stepping, checked with 3D Slicer's
own arithmetic.

Slicer is not available here, so the few formulas the check needs are re-implemented from the semantics
of Slicer's sources (Libs/MRML/Core/vtkMRMLSliceNode.cxx):
- SetSliceToRASByNTP(N, T, P, orientation 0): C = N x T, then T = C x N, all three normalised; SliceToRAS
  gets the columns (T, C, N) and the translation P.
- UpdateMatrices: XYToRAS = SliceToRAS * XYToSlice, where XYToSlice scales by the positive pixel size
  FieldOfView / Dimensions. XY are VTK display coordinates of the view (origin bottom-left, y upwards),
  so the slice X axis points to the right of the screen and the slice Y axis points up.
- GetSliceOffset: the SliceToRAS translation brought into slice coordinates (inverse of the upper 3x3), its
  Z component; SetSliceOffset replaces that component. vtkMRMLSliceIntersectionWidget::MoveSlice (offset
  slider, arrow keys, f / b, mouse wheel) adds +/- the slice spacing to the offset.
- RotateToVolumePlane -> RotateToAxes: picks the signed volume axes closest (sum of angles) to the current
  slice X and Y axes, the normal's sign ignored; Z = X x Y for a right-handed SliceToRAS.
"""
import numpy as np
import pytest

import helpers_slicer  # noqa: F401  (puts the library on sys.path)
from SAMUSSegmentLib import geometry

AXIAL = np.array([[-1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # Slicer's axial preset: L, A, S


def unit(v):
    return np.asarray(v, float) / np.linalg.norm(v)


def slice_to_ras_by_ntp(n, t, p):
    """vtkMRMLSliceNode::SetSliceToRASByNTP with orientation 0 (para-axial)."""
    c = np.cross(n, t)
    t = np.cross(c, n)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = unit(t), unit(c), unit(n), p
    return m


def angle(a, b):
    """vtkMath::AngleBetweenVectors."""
    return np.arctan2(np.linalg.norm(np.cross(a, b)), np.dot(a, b))


def rotate_to_axes(slice_to_ras, reference_to_ras, normal_axis=-1):
    """vtkMRMLSliceNode::RotateToAxes (what RotateToVolumePlane does with the volume's IJK->RAS)."""
    directions = np.vstack([np.eye(3), -np.eye(3)])[[0, 3, 1, 4, 2, 5]]  # +I, -I, +J, -J, +K, -K
    x0, y0, z0 = (slice_to_ras[:3, c] for c in range(3))
    best = None
    for ix, dx in enumerate(directions):
        if ix // 2 == normal_axis:
            continue
        for iy, dy in enumerate(directions):
            if iy // 2 in (ix // 2, normal_axis):
                continue
            vx, vy = reference_to_ras[:3, :3] @ dx, reference_to_ras[:3, :3] @ dy
            dz = angle(np.cross(vx, vy), z0)
            diff = angle(vx, x0) + angle(vy, y0) + min(dz, np.pi - dz)
            if best is None or diff < best[0]:
                best = (diff, unit(vx), unit(vy))
    out = slice_to_ras.copy()
    x, y = best[1], best[2]
    right_handed = np.linalg.det(slice_to_ras[:3, :3]) >= 0
    out[:3, 0], out[:3, 1], out[:3, 2] = x, y, np.cross(x, y) if right_handed else np.cross(y, x)
    return out


def view_coordinates(slice_to_ras, ijk_to_ras, k, dims):
    """Slice-plane (x right, y up, z out of the screen) coordinates of every pixel of frame k: [j, i, 3]."""
    j, i = np.mgrid[0:dims[1], 0:dims[0]]
    ijk = np.stack([i, j, np.full_like(i, k)], axis=-1).reshape(-1, 3).astype(float)
    ras = geometry.apply(ijk_to_ras, ijk)
    return geometry.apply(np.linalg.inv(slice_to_ras), ras).reshape(dims[1], dims[0], 3)


def rotation(axis, degrees):
    axis = unit(axis)
    a = np.radians(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * cross + (1 - np.cos(a)) * cross @ cross


SPACING = [0.2, 0.3, 1.5]
GEOMETRIES = {
    # DICOM, NRRD and PNG files are LPS: Slicer loads them with IJK->RAS = diag(-1, -1, 1) (times the spacing).
    "lps_file": geometry.ijk_to_ras_matrix([12.0, -30.0, 4.0], SPACING, np.diag([-1.0, -1.0, 1.0])),
    "identity": np.eye(4),
    "oblique": geometry.ijk_to_ras_matrix([5.0, 2.0, -8.0], SPACING, rotation([1, 2, 3], 37) @ np.diag([-1.0, -1, 1])),
    "probe_tilted": geometry.ijk_to_ras_matrix([0.0, 0, 0], SPACING, rotation([0, 1, 0], 90) @ rotation([1, 0, 0], -20)),
    # Left-handed IJK axes (a flipped K axis, as some exporters write).
    "left_handed": geometry.ijk_to_ras_matrix([1.0, 1, 1], SPACING, np.diag([-1.0, -1, -1])),
}


def set_slice_offset(slice_to_ras, offset):
    """vtkMRMLSliceNode::SetSliceOffset."""
    rotation = slice_to_ras[:3, :3]
    in_slice = np.linalg.solve(rotation, slice_to_ras[:3, 3])
    in_slice[2] = offset
    out = slice_to_ras.copy()
    out[:3, 3] = rotation @ in_slice
    return out


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_view_shows_row_zero_at_the_top_and_column_zero_on_the_left(name):
    ijk_to_ras = GEOMETRIES[name]
    dims, k = (7, 5, 4), 2
    slice_to_ras = geometry.frame_slice_to_ras(ijk_to_ras, dims, k)
    xyz = view_coordinates(slice_to_ras, ijk_to_ras, k, dims)
    np.testing.assert_allclose(xyz[..., 2], 0, atol=1e-9)  # the view is exactly frame k
    size_i, size_j = np.linalg.norm(ijk_to_ras[:3, 0]), np.linalg.norm(ijk_to_ras[:3, 1])
    j, i = np.mgrid[0:dims[1], 0:dims[0]]
    # No rotation, no mirror: x grows with the column, y falls with the row, centred on the frame.
    np.testing.assert_allclose(xyz[..., 0], (i - (dims[0] - 1) / 2) * size_i, atol=1e-9)
    np.testing.assert_allclose(xyz[..., 1], -(j - (dims[1] - 1) / 2) * size_j, atol=1e-9)
    assert xyz[0, 0, 1] > xyz[-1, 0, 1] and xyz[0, 0, 0] < xyz[0, -1, 0]  # pixel (0, 0) is top-left
    np.testing.assert_allclose(slice_to_ras[:3, :3].T @ slice_to_ras[:3, :3], np.eye(3), atol=1e-12)  # orthonormal
    # A view turned by 180 degrees in-plane is told apart (the module aligns that view again).
    turned = slice_to_ras[:3, :3] @ np.diag([-1.0, -1.0, 1.0])
    assert not np.allclose(turned, slice_to_ras[:3, :3], atol=1e-3)
    # A parent transform (rigid) does not change what the view shows.
    parent = np.eye(4)
    parent[:3, :3], parent[:3, 3] = rotation([3, -1, 2], 71), [10, -4, 2]
    world = parent @ ijk_to_ras
    np.testing.assert_allclose(view_coordinates(geometry.frame_slice_to_ras(world, dims, k), world, k, dims),
                               xyz, atol=1e-9)


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_slice_offset_grows_with_the_frame_and_slicer_stepping_goes_forward(name):
    ijk_to_ras = GEOMETRIES[name]
    dims = (7, 5, 6)
    right_handed = np.linalg.det(ijk_to_ras[:3, :3]) > 0
    # Right-handed volumes need a left-handed slice frame (X x Y = -Z), left-handed ones a right-handed one.
    assert (np.linalg.det(geometry.frame_slice_to_ras(ijk_to_ras, dims, 0)[:3, :3]) < 0) == right_handed
    offsets = [geometry.slice_offset(geometry.frame_slice_to_ras(ijk_to_ras, dims, k)) for k in range(dims[2])]
    assert all(b > a for a, b in zip(offsets, offsets[1:])), offsets  # the offset slider runs with the frames
    ras_to_ijk = np.linalg.inv(ijk_to_ras)
    shown = geometry.frame_slice_to_ras(ijk_to_ras, dims, 2)
    normal = shown[:3, 2]
    spacing = abs(np.dot(ijk_to_ras[:3, 2], normal))  # distance between frames along the normal
    for step, expected in ((+1, 3), (-1, 1)):  # "f" / arrow up: next frame; "b" / arrow down: previous
        moved = set_slice_offset(shown, geometry.slice_offset(shown) + step * spacing)
        assert geometry.frame_at_world(moved[:3, 3], ras_to_ijk, dims[2]) == expected
        np.testing.assert_allclose(view_coordinates(moved, ijk_to_ras, expected, dims)[..., 2], 0, atol=1e-9)


def test_the_plane_normal_of_set_slice_to_ras_by_ntp_would_step_backwards():
    # What the module did before: SetSliceToRASByNTP(N = J x I, T = I, mode 0) is upright, but for a
    # right-handed volume its normal is -K, so Slicer's "next slice" went to the previous frame.
    ijk_to_ras, dims = GEOMETRIES["lps_file"], (7, 5, 4)
    i_axis, j_axis = ijk_to_ras[:3, 0], ijk_to_ras[:3, 1]
    offsets = []
    for k in range(dims[2]):
        centre = geometry.apply(ijk_to_ras, [3, 2, k])
        offsets.append(geometry.slice_offset(slice_to_ras_by_ntp(unit(np.cross(j_axis, i_axis)), i_axis, centre)))
    assert all(b < a for a, b in zip(offsets, offsets[1:]))
    # And N = K (mode 0) stepped forward but drew the frame upside down (row 0 at the bottom).
    centre = geometry.apply(ijk_to_ras, [3, 2, 1])
    xyz = view_coordinates(slice_to_ras_by_ntp(unit(ijk_to_ras[:3, 2]), i_axis, centre), ijk_to_ras, 1, dims)
    assert xyz[0, 0, 1] < xyz[-1, 0, 1]


def test_rotate_to_volume_plane_would_turn_volumes_with_identity_geometry():
    # Why the module sets N, T itself instead of calling RotateToVolumePlane: that keeps the axes closest to
    # the current (axial) view (patient left on screen right, anterior up). Right for LPS files; an identity
    # IJK->RAS volume would be shown turned by 180 degrees.
    dims, k = (7, 5, 4), 1
    for name, upright in (("lps_file", True), ("identity", False)):
        ijk_to_ras = GEOMETRIES[name]
        xyz = view_coordinates(rotate_to_axes(AXIAL, ijk_to_ras), ijk_to_ras, k, dims)
        assert (xyz[0, 0, 0] < xyz[0, -1, 0]) == upright, name  # column 0 on the left
        assert (xyz[0, 0, 1] > xyz[-1, 0, 1]) == upright, name  # row 0 at the top


def test_frame_slice_to_ras_rejects_a_degenerate_geometry():
    flat = np.eye(4)
    flat[:3, 1] = flat[:3, 0]
    with pytest.raises(geometry.GeometryError, match="parallel"):
        geometry.frame_slice_to_ras(flat, (3, 3, 3), 0)
