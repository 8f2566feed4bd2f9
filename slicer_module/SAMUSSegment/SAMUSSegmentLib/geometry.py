"""Voxel <-> world geometry with 4x4 homogeneous numpy matrices.

Conventions (same as Slicer): a point is (i, j, k) in voxel index space and (R, A, S) in
world space; volume arrays are indexed [k, j, i]. `ras_to_ijk` is the volume's own
RAS->IJK matrix; `world_to_local` maps world coordinates into the coordinate system of
the volume's parent transform (identity when the volume is not transformed).
"""
from __future__ import annotations

import numpy as np


class GeometryError(ValueError):
    """A point or matrix that cannot be used (outside the volume, singular matrix, ...)."""


def as_matrix(matrix, name: str = "matrix") -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.shape != (4, 4):
        raise GeometryError(f"{name} must be a 4x4 matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise GeometryError(f"{name} contains NaN or infinite values")
    return m


def invert(matrix, name: str = "matrix") -> np.ndarray:
    m = as_matrix(matrix, name)
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise GeometryError(f"{name} is singular and cannot be inverted")
    return np.linalg.inv(m)


def apply(matrix, point) -> np.ndarray:
    """Transforms one 3D point (or an N x 3 array) by a 4x4 matrix."""
    p = np.asarray(point, dtype=float)
    single = p.ndim == 1
    p = np.atleast_2d(p)
    if p.shape[1] != 3:
        raise GeometryError(f"points must have 3 coordinates, got shape {np.asarray(point).shape}")
    h = np.hstack([p, np.ones((len(p), 1))]) @ as_matrix(matrix).T
    out = h[:, :3] / h[:, 3:4]
    return out[0] if single else out


def ijk_to_ras_matrix(origin, spacing, directions=None) -> np.ndarray:
    """Builds IJK->RAS from origin, spacing and a 3x3 matrix whose columns are the I, J, K axes."""
    d = np.eye(3) if directions is None else np.asarray(directions, dtype=float)
    spacing = np.asarray(spacing, dtype=float)
    if d.shape != (3, 3) or spacing.shape != (3,) or np.any(spacing <= 0):
        raise GeometryError("need a 3x3 direction matrix and 3 positive spacings")
    m = np.eye(4)
    m[:3, :3] = d * spacing[None, :]
    m[:3, 3] = np.asarray(origin, dtype=float)
    return m


def world_to_ijk(point_world, ras_to_ijk, world_to_local=None) -> np.ndarray:
    """Continuous IJK of a world point, going through the volume's parent transform first."""
    p = np.asarray(point_world, dtype=float)
    if world_to_local is not None:
        p = apply(world_to_local, p)
    return apply(ras_to_ijk, p)


def ijk_to_world(ijk, ijk_to_ras, local_to_world=None) -> np.ndarray:
    p = apply(ijk_to_ras, np.asarray(ijk, dtype=float))
    if local_to_world is not None:
        p = apply(local_to_world, p)
    return p


def voxel_index(ijk, dims_ijk) -> tuple[int, int, int]:
    """Rounds a continuous IJK to the voxel that contains it; errors when it is outside the volume.

    Voxel centres sit on integer IJK, so rounding (not truncation) picks the containing voxel.
    """
    ijk = np.asarray(ijk, dtype=float)
    idx = tuple(int(v) for v in np.floor(ijk + 0.5))
    for axis, (v, n) in enumerate(zip(idx, dims_ijk)):
        if not 0 <= v < n:
            raise GeometryError(
                f"point at IJK ({ijk[0]:.1f}, {ijk[1]:.1f}, {ijk[2]:.1f}) is outside the volume "
                f"(size {tuple(int(d) for d in dims_ijk)}; axis {'IJK'[axis]})"
            )
    return idx


def frame_slice_to_ras(ijk_to_world, dims_ijk, k: int) -> np.ndarray:
    """SliceToRAS of a slice view that shows frame k upright, with the slice offset growing with k.

    Columns: X (screen right) = the I axis, Y (screen up) = -J made perpendicular to X, Z (the
    normal, the direction in which the slice offset grows) = the plane's normal on the side of +K.
    Row 0 is then at the top and column 0 on the left, as the file and every image viewer show
    the frame, and Slicer's own frame stepping (offset slider, arrow keys, f / b, mouse wheel:
    vtkMRMLSliceIntersectionWidget::MoveSlice adds the slice spacing to the offset, which is
    the Z component of the translation in slice coordinates) goes to the next frame.

    For ordinary right-handed volumes (DICOM, NRRD, PNG, identity) X x Y = -K, so this matrix is
    left-handed (determinant -1); Slicer accepts that (its axial preset, diag(-1, 1, 1), is one).
    SetSliceToRASByNTP cannot give it: it always makes Y = N x T, so the normal would point to
    -K and frame stepping would run backwards. Set the matrix directly instead
    (GetSliceToRAS().DeepCopy(m); UpdateMatrices()).
    """
    m = as_matrix(ijk_to_world, "ijk_to_world")
    i_axis, j_axis, k_axis = m[:3, 0], m[:3, 1], m[:3, 2]
    normal = np.cross(i_axis, j_axis)
    size = np.linalg.norm(normal)
    if size < 1e-12 * np.linalg.norm(i_axis) * np.linalg.norm(j_axis):
        raise GeometryError("the volume's I and J axes are parallel; its frames have no plane")
    normal = normal / size
    if np.dot(normal, k_axis) < 0:
        normal = -normal
    x = i_axis / np.linalg.norm(i_axis)
    up = -(j_axis - np.dot(j_axis, x) * x)  # -J without its part along I (sheared frames)
    y = up / np.linalg.norm(up)
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2] = x, y, normal
    out[:3, 3] = apply(m, [(dims_ijk[0] - 1) / 2.0, (dims_ijk[1] - 1) / 2.0, float(k)])
    return out


def slice_offset(slice_to_ras) -> float:
    """vtkMRMLSliceNode::GetSliceOffset: the translation in slice coordinates, its Z component."""
    m = as_matrix(slice_to_ras, "slice_to_ras")
    return float(np.linalg.solve(m[:3, :3], m[:3, 3])[2])


def box_roi(box, origin_world, step_i, step_j) -> tuple[np.ndarray, np.ndarray]:
    """(object-to-world 4x4, size) of a markups ROI that covers the pixels of `box` (i0, j0, i1, j1) on a frame.

    origin_world: world position of pixel (0, 0) of the frame; step_i / step_j: world vectors of one pixel
    along i / j. The ROI's edges lie on the pixel borders (half a pixel outside the corner centres), its X / Y
    axes follow I / J, and it is one pixel thick, so it shows as a rectangle on the frame.
    """
    i0, j0, i1, j1 = box
    origin, step_i, step_j = (np.asarray(v, dtype=float) for v in (origin_world, step_i, step_j))
    x = step_i / np.linalg.norm(step_i)
    y = step_j - np.dot(step_j, x) * x
    pixel_j = np.linalg.norm(y)
    y = y / pixel_j
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = x, y, np.cross(x, y)
    matrix[:3, 3] = origin + (i0 + i1) / 2.0 * step_i + (j0 + j1) / 2.0 * step_j
    pixel_i = np.linalg.norm(step_i)
    size = np.array([(i1 - i0 + 1) * pixel_i, (j1 - j0 + 1) * pixel_j, min(pixel_i, pixel_j)])
    return matrix, size


def box_from_roi(object_to_world, size, world_to_ijk_matrix, frame_shape):
    """(i0, j0, i1, j1) of the frame pixels whose centres a markups ROI covers (in-plane), clipped to the
    frame; None when the ROI covers no pixel centre of it. Inverse of box_roi."""
    half = np.asarray(size, dtype=float) / 2.0
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    corners = apply(as_matrix(object_to_world, "object_to_world"), signs * half)
    ijk = apply(world_to_ijk_matrix, corners)
    rows, cols = frame_shape
    # A pixel is in when its centre is: the ROI's edges are half a pixel outside the corner pixels' centres.
    i0 = max(0, int(np.ceil(ijk[:, 0].min() - 1e-6)))
    i1 = min(cols - 1, int(np.floor(ijk[:, 0].max() + 1e-6)))
    j0 = max(0, int(np.ceil(ijk[:, 1].min() - 1e-6)))
    j1 = min(rows - 1, int(np.floor(ijk[:, 1].max() + 1e-6)))
    if i1 < i0 or j1 < j0:
        return None
    return (i0, j0, i1, j1)


def frame_at_world(point_world, world_to_ijk_matrix, n_frames: int) -> int:
    """Index of the frame (K slice) closest to a world point, clamped to the volume."""
    k = apply(world_to_ijk_matrix, point_world)[2]
    return int(min(max(np.floor(k + 0.5), 0), n_frames - 1))


_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_to_lps(matrix) -> np.ndarray:
    """Converts an IJK->RAS matrix to IJK->LPS (the space ITK and NRRD files use)."""
    return _RAS_TO_LPS @ as_matrix(matrix)


lps_to_ras = ras_to_lps  # the flip is its own inverse
