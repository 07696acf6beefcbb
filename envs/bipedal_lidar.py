"""BipedalWalker's ten lidar rays against the static terrain, in numba: Box2D's ray casts without their callbacks.

The reference is gymnasium's: ``world.RayCast(lidar, p1, p2)`` for each ray, whose Python callback ignores every
fixture outside category bit 1 and clips the ray at each terrain hit, so the ray's ``fraction`` ends as the nearest
hit's (1 when none). Those ten casts were ~50 us of the ~150 us step here (each a walk of Box2D's broad-phase tree
with a Python callback per fixture it meets). The terrain (ground edges and, in Hardcore, stump/stair/pit polygons)
is static: :func:`terrain_geometry` reads its shapes once per terrain, and :func:`cast_rays` intersects the rays
with them in float32, operation for operation as Box2D 2.3's ``b2EdgeShape::RayCast`` and
``b2PolygonShape::RayCast`` (no fused multiply-adds, as in pybox2d's build), so fractions and hit points are
Box2D's bit for bit (``tests/test_bipedal_walker.py`` holds them to the casts, and whole trajectories to
gymnasium's). Box2D's broad phase only culls fixtures whose fattened boxes the ray misses, which cannot hold a
hit, so the nearest hit over every terrain fixture is the one its traversal leaves.

:func:`terrain_geometry` returns None (the caller then casts through Box2D) for a world this does not cover: a
fixture of category bit 1 on a body that is not static at the origin without rotation, or of another shape; and on
any machine but x86-64 (:data:`SAME_ARITHMETIC`), where compilers fuse Box2D's multiply-adds by default (GCC on
aarch64), so its float32 results may differ from these in the last bit.
Reading every body's shapes through pybox2d takes ~3 ms, as long as a reset, and Hardcore resets every ~70 steps
while the walker still falls: :func:`walker_terrain_geometry` takes the ground's edges from the walker's own terrain
lists instead (gymnasium's ``_generate_terrain``, fingerprinted with its ``step`` and ``reset``).
"""

from __future__ import annotations

import platform
from typing import Any, NamedTuple

import numba
import numpy as np

_F32 = np.float32
_MAX_POLYGON_VERTICES = 8  # Box2D's b2_maxPolygonVertices
_EPSILON = np.float32(np.finfo(np.float32).eps)  # Box2D's b2_epsilon (FLT_EPSILON)
SAME_ARITHMETIC = platform.machine().lower() in ("x86_64", "amd64")
"""Whether Box2D's float32 ray casts are known to round as these do here (x86-64: no fused multiply-adds in a
generic build); elsewhere the lidar casts through Box2D."""


class TerrainGeometry(NamedTuple):
    """The terrain's shapes in world coordinates, float32 as Box2D holds them."""

    edges: np.ndarray
    """``[E, 4]``: each edge's ``v1.x, v1.y, v2.x, v2.y``."""
    edge_x: np.ndarray
    """``[E, 2]``: each edge's lowest x, and the highest x of it and every edge before it: the edges are sorted by
    their lowest x, so a ray's scan starts at the first edge reaching its lowest x and stops at the first edge
    starting beyond its highest."""
    polygons: np.ndarray
    """``[P, 8, 4]``: each polygon's vertices and outward normals ``x, y, nx, ny``, in Box2D's order."""
    polygon_sizes: np.ndarray
    """``int64 [P]``: vertices per polygon."""
    polygon_x: np.ndarray
    """``[P, 2]``: each polygon's lowest and highest x."""


def terrain_geometry(world: Any) -> TerrainGeometry | None:
    """The shapes of every fixture in category bit 1 (what the lidar sees) of ``world``'s bodies, or None when one
    is not an edge or polygon of a static body at the origin with angle 0."""
    import Box2D

    if not SAME_ARITHMETIC:
        return None
    edges: list[list[float]] = []
    polygons: list[Any] = []
    for body in world.bodies:
        for fixture in body.fixtures:
            if (fixture.filterData.categoryBits & 1) == 0:
                continue
            position = body.position
            if body.type != Box2D.b2_staticBody or position[0] != 0.0 or position[1] != 0.0 or body.angle != 0.0:
                return None
            shape = fixture.shape
            if isinstance(shape, Box2D.b2EdgeShape):
                (x1, y1), (x2, y2) = shape.vertices
                edges.append([x1, y1, x2, y2])
            elif isinstance(shape, Box2D.b2PolygonShape):
                polygons.append(shape)
            else:
                return None
    return _with_extents(np.array(edges, _F32).reshape(-1, 4), *_polygon_arrays(polygons))


def walker_terrain_geometry(walker: Any) -> TerrainGeometry | None:
    """:func:`terrain_geometry` of a gymnasium ``BipedalWalker`` after its reset, ~30x sooner: the ground's edges from
    the walker's own ``terrain_x``/``terrain_y`` (the doubles Box2D rounded to float32), only the obstacles'
    polygons read from Box2D. A world holding any body besides the walker's terrain, hull and legs is read whole."""
    if not SAME_ARITHMETIC:
        return None
    edge_count = len(walker.terrain_x) - 1
    obstacles = walker.terrain[edge_count:]  # the terrain list ends with the obstacles, after its edges
    if walker.world.bodyCount != len(walker.terrain) + 1 + len(walker.legs):
        return terrain_geometry(walker.world)
    xs, ys = np.array(walker.terrain_x, np.float32), np.array(walker.terrain_y, np.float32)
    edges = np.stack([xs[:-1], ys[:-1], xs[1:], ys[1:]], axis=1)
    return _with_extents(edges, *_polygon_arrays([body.fixtures[0].shape for body in obstacles]))


def _polygon_arrays(shapes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Box2D polygon ``shapes`` as ``[P, 8, 4]`` vertices and normals (float32, Box2D's order) and sizes ``[P]``."""
    polygons = np.zeros((len(shapes), _MAX_POLYGON_VERTICES, 4), _F32)
    sizes = np.zeros(len(shapes), np.int64)
    for i, shape in enumerate(shapes):
        vertices = shape.vertices
        polygons[i, : len(vertices), :2] = vertices
        polygons[i, : len(vertices), 2:] = shape.normals
        sizes[i] = len(vertices)
    return polygons, sizes


def _with_extents(edges: np.ndarray, polygons: np.ndarray, sizes: np.ndarray) -> TerrainGeometry:
    """The geometry with each shape's x extent."""
    lowest, highest = np.minimum(edges[:, 0], edges[:, 2]), np.maximum(edges[:, 0], edges[:, 2])
    order = np.lexsort((edges[:, 3], edges[:, 2], edges[:, 1], edges[:, 0], lowest))  # ties: by the edge itself
    edges, lowest = edges[order], lowest[order]
    edge_x = np.stack([lowest, np.maximum.accumulate(highest[order])], axis=1)
    used = np.arange(_MAX_POLYGON_VERTICES) < sizes[:, None]  # [P, 8]: each polygon's vertices
    xs = polygons[:, :, 0]
    polygon_x = np.stack([np.where(used, xs, np.inf).min(axis=1, initial=np.inf),
                          np.where(used, xs, -np.inf).max(axis=1, initial=-np.inf)], axis=1).astype(_F32)
    return TerrainGeometry(edges, edge_x, polygons, sizes, polygon_x)


@numba.njit(cache=True)
def _edge_fraction(p1x: np.float32, p1y: np.float32, dx: np.float32, dy: np.float32, max_fraction: np.float32,
                   v1x: np.float32, v1y: np.float32, v2x: np.float32, v2y: np.float32) -> np.float32:
    """``b2EdgeShape::RayCast``'s fraction of the ray ``p1 + t d`` (t <= ``max_fraction``), or -1 for no hit."""
    ex, ey = v2x - v1x, v2y - v1y
    nx, ny = ey, -ex
    length = np.float32(np.sqrt(nx * nx + ny * ny))
    if length >= _EPSILON:  # b2Vec2::Normalize
        inverse = np.float32(1.0) / length
        nx, ny = nx * inverse, ny * inverse
    numerator = nx * (v1x - p1x) + ny * (v1y - p1y)
    denominator = nx * dx + ny * dy
    if denominator == 0.0:
        return np.float32(-1.0)
    t = numerator / denominator
    if t < 0.0 or max_fraction < t:
        return np.float32(-1.0)
    qx, qy = p1x + t * dx, p1y + t * dy
    rr = ex * ex + ey * ey
    if rr == 0.0:
        return np.float32(-1.0)
    s = ((qx - v1x) * ex + (qy - v1y) * ey) / rr
    if s < 0.0 or np.float32(1.0) < s:
        return np.float32(-1.0)
    return t


@numba.njit(cache=True)
def _polygon_fraction(p1x: np.float32, p1y: np.float32, dx: np.float32, dy: np.float32, max_fraction: np.float32,
                      corners: np.ndarray, size: int) -> np.float32:
    """``b2PolygonShape::RayCast``'s fraction (``corners [8, 4]``: vertex and normal), or -1 for no hit."""
    lower, upper, index = np.float32(0.0), max_fraction, -1
    for i in range(size):
        vx, vy, nx, ny = corners[i, 0], corners[i, 1], corners[i, 2], corners[i, 3]
        numerator = nx * (vx - p1x) + ny * (vy - p1y)
        denominator = nx * dx + ny * dy
        if denominator == 0.0:
            if numerator < 0.0:
                return np.float32(-1.0)
        elif denominator < 0.0 and numerator < lower * denominator:
            lower, index = numerator / denominator, i
        elif denominator > 0.0 and numerator < upper * denominator:
            upper = numerator / denominator
        if upper < lower:
            return np.float32(-1.0)
    return lower if index >= 0 else np.float32(-1.0)


@numba.njit(cache=True)
def cast_rays(x: float, y: float, offsets: np.ndarray, edges: np.ndarray, edge_x: np.ndarray, polygons: np.ndarray,
              polygon_sizes: np.ndarray, polygon_x: np.ndarray, fractions: np.ndarray, points: np.ndarray) -> None:
    """Each ray from the hull at ``(x, y)`` to ``(x, y) + offsets[i]`` (``float64 [R, 2]``; both ends rounded to
    float32 as Box2D's ``b2Vec2`` takes them) against the terrain: the nearest hit's ``fractions[i]`` (1 when none)
    and hit ``points[i]`` (``(1 - f) p1 + f p2``, NaN when none), as Box2D's casts leave them."""
    margin = np.float32(1.0)  # far wider than any rounding: a skipped shape cannot hold a hit
    p1x, p1y = np.float32(x), np.float32(y)
    for r in range(offsets.shape[0]):
        p2x, p2y = np.float32(x + offsets[r, 0]), np.float32(y + offsets[r, 1])
        dx, dy = p2x - p1x, p2y - p1y
        low, high = min(p1x, p2x) - margin, max(p1x, p2x) + margin
        nearest = np.float32(1.0)
        hit = False
        for e in range(np.searchsorted(edge_x[:, 1], low), edges.shape[0]):  # earlier edges end before low
            if edge_x[e, 0] > high:
                break  # this edge and every later one start beyond the ray
            t = _edge_fraction(p1x, p1y, dx, dy, nearest, edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3])
            if t >= 0.0:
                nearest, hit = t, True
        for p in range(polygons.shape[0]):
            if polygon_x[p, 1] < low or polygon_x[p, 0] > high:
                continue
            t = _polygon_fraction(p1x, p1y, dx, dy, nearest, polygons[p], polygon_sizes[p])
            if t >= 0.0:
                nearest, hit = t, True
        fractions[r] = nearest
        if hit:
            keep = np.float32(1.0) - nearest
            points[r, 0] = keep * p1x + nearest * p2x
            points[r, 1] = keep * p1y + nearest * p2y
        else:
            points[r, 0] = points[r, 1] = np.nan
