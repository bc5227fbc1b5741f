"""Ray-cast pinhole views of a triangle mesh: depth, triangle id, instance id and colour per pixel.

Engine: trimesh + embreex (Intel Embree), the optional extra ``mesh`` (``pip install -e .[mesh]``);
see BENCHMARKS.md "Mesh ray casting" for why not Open3D. Cameras follow mllm3d.shared.scene: ``K`` is the
3x3 pinhole matrix, ``pose`` the 4x4 camera-to-world matrix (x right, y down, z forward); depth is the
camera z of the first hit (0 = no hit). Per-pixel instance = instance of the hit triangle's vertex
nearest to the hit point; colour = barycentric blend of the vertex colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mllm3d.shared.errors import BadInputError, Mllm3dError

INSTALL_HINT = "pip install -e '.[mesh]' (trimesh + embreex)"


class MissingExtraError(Mllm3dError, ImportError):
    """An optional dependency group is not installed."""


def _intersector(vertices: np.ndarray, faces: np.ndarray):
    try:
        import embreex  # noqa: F401 - trimesh falls back to a slow pure-numpy engine without it
        import trimesh
        from trimesh.ray import ray_pyembree
    except ImportError:
        raise MissingExtraError(f"mesh ray casting needs the optional extra 'mesh': {INSTALL_HINT}") from None
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
    try:
        return ray_pyembree.RayMeshIntersector(mesh, scale_to_box=False)
    except ImportError:  # trimesh defers the embreex import to here
        raise MissingExtraError(f"mesh ray casting needs embreex (Embree) next to trimesh: {INSTALL_HINT}") from None


@dataclass
class RenderedView:
    depth: np.ndarray  # (H, W) float32 metres, 0 = no hit
    face_ids: np.ndarray  # (H, W) int64 triangle index, -1 = no hit
    instance_map: np.ndarray | None  # (H, W) int32, -1 = none (None without vertex instances)
    color: np.ndarray | None  # (H, W, 3) uint8 (None without vertex colours)


def pixel_rays(K: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(H*W, 3) camera-frame ray directions K^-1 [u, v, 1] through pixel centres (row-major)."""
    h, w = image_size
    rr, cc = np.mgrid[0:h, 0:w]
    pix = np.stack([cc.ravel(), rr.ravel(), np.ones(h * w)], axis=1)
    rays = pix @ np.linalg.inv(np.asarray(K, dtype=np.float64)).T
    return rays / rays[:, 2:3]


class MeshRaycaster:
    """First-hit ray casting against one triangle mesh (built once, reused for every view)."""

    def __init__(
        self, vertices: np.ndarray, faces: np.ndarray, vertex_colors: np.ndarray | None = None,
        vertex_instances: np.ndarray | None = None, name: str = "mesh",
    ) -> None:
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise BadInputError(f"{name}: need (N,3) vertices and a non-empty (F,3) face array")
        for what, arr in (("vertex colours", vertex_colors), ("vertex instances", vertex_instances)):
            if arr is not None and len(arr) != len(v):
                raise BadInputError(f"{name}: {len(arr)} {what} for {len(v)} vertices")
        self.vertices, self.faces = v, f
        self.vertex_colors = None if vertex_colors is None else np.asarray(vertex_colors, dtype=np.float64)
        self.vertex_instances = None if vertex_instances is None else np.asarray(vertex_instances, np.int32)
        self._rays = _intersector(v, f)

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hit locations (P,3), triangle ids (P,) with -1 = miss) of rays ``origins + t*dirs``."""
        origins = np.ascontiguousarray(np.broadcast_to(origins, dirs.shape), dtype=np.float64)
        tri, ray, loc = self._rays.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
        tri_ids = np.full(len(dirs), -1, dtype=np.int64)
        locs = np.zeros((len(dirs), 3))
        tri_ids[ray] = tri
        locs[ray] = loc
        return locs, tri_ids

    def render(self, K: np.ndarray, pose: np.ndarray, image_size: tuple[int, int]) -> RenderedView:
        """Depth, triangle ids, instance map and colour of a pinhole camera (see the module docstring)."""
        h, w = image_size
        pose = np.asarray(pose, dtype=np.float64)
        dirs = pixel_rays(K, image_size) @ pose[:3, :3].T
        locs, tri = self.cast(pose[:3, 3], dirs)
        hit = tri >= 0
        depth = np.where(hit, (locs - pose[:3, 3]) @ pose[:3, 2], 0.0)
        inst = color = None
        if self.vertex_instances is not None or self.vertex_colors is not None:
            corners = self.vertices[self.faces[np.maximum(tri, 0)]]  # (P,3,3)
            bary = _barycentric(locs, corners)
            vidx = self.faces[np.maximum(tri, 0)]
            if self.vertex_instances is not None:
                near = vidx[np.arange(len(tri)), np.argmax(bary, axis=1)]
                inst = np.where(hit, self.vertex_instances[near], -1).astype(np.int32).reshape(h, w)
            if self.vertex_colors is not None:
                col = np.einsum("pk,pkc->pc", bary, self.vertex_colors[vidx])
                col = np.where(hit[:, None], col, 0.0)
                color = np.clip(np.rint(col), 0, 255).astype(np.uint8).reshape(h, w, 3)
        return RenderedView(depth.astype(np.float32).reshape(h, w), tri.reshape(h, w), inst, color)


def _barycentric(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """(P,3) barycentric weights of points ``p`` (P,3) in triangles ``tri`` (P,3,3), clipped to >= 0."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) < 1e-18, 1.0, den)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    out = np.clip(np.stack([1.0 - v - w, v, w], axis=1), 0.0, None)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-12)
