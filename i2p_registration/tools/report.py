"""
Score a demo's output rosbag2 against the drive's ground truth; draw the report (no ROS needed).

Reads the recorded outputs with ``rosbags``: ``/tf`` (the registration node's
``<lidar> -> <camera>_registered`` at each image stamp, the multiview node's transforms),
``/diagnostics``, ``~/overlay`` images and the multiview ``path`` when present. Scores each
registration against the true transform of its pair (the camera at the image stamp in the LiDAR
frame at the stamp of the scan the node's ``nearest`` policy paired it with) with the metrics of
``core/metrics.py``, and writes PNG figures (OpenCV; matplotlib is not needed) and
``report.md`` / ``metrics.json``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.typesys import get_typestore, Stores

from ..core.geometry.se3 import inverse
from ..core.metrics import registration_recall, rre_geodesic, rre_protocol, rte
from ..data import bag_messages as bm
from ..data.ground_truth import GroundTruth

REGISTERED_SUFFIX = '_registered'
NS = 1_000_000_000


# --- reading the outputs ---------------------------------------------------------------------

def read_outputs(bag: str | os.PathLike) -> dict:
    """
    Read a recorded demo output bag.

    :return: ``{'tf': [(log_ns, stamp_ns, parent, child, T)], 'diagnostics': [(log_ns, name,
        {key: value})], 'overlays': [(stamp_ns, rgb)], 'paths': {topic: [(log_ns, (K, 3))]},
        'topics': {topic: count}}``.
    """
    store = get_typestore(Stores.ROS2_KILTED)
    out = {'tf': [], 'diagnostics': [], 'overlays': [], 'paths': {}, 'topics': {}}
    with Reader(bag) as reader:
        for conn, log_ns, raw in reader.messages():
            out['topics'][conn.topic] = out['topics'].get(conn.topic, 0) + 1
            if conn.msgtype not in store.types:
                continue
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.msgtype == bm.TF_TYPE:
                for tf in msg.transforms:
                    out['tf'].append((log_ns, bm.stamp_to_ns(tf.header.stamp),
                                      tf.header.frame_id, tf.child_frame_id,
                                      bm.transform_to_matrix(tf)))
            elif conn.msgtype == 'diagnostic_msgs/msg/DiagnosticArray':
                for status in msg.status:
                    out['diagnostics'].append((log_ns, status.name,
                                               {kv.key: kv.value for kv in status.values}))
            elif conn.msgtype == bm.IMAGE_TYPE and conn.topic.endswith('overlay'):
                out['overlays'].append((bm.stamp_to_ns(msg.header.stamp),
                                        bm.image_to_numpy(msg)))
            elif conn.msgtype == 'nav_msgs/msg/Path':
                xyz = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z]
                                for p in msg.poses]).reshape(-1, 3)
                stamps = np.array([bm.stamp_to_ns(p.header.stamp) for p in msg.poses],
                                  dtype=np.int64)
                out['paths'].setdefault(conn.topic, []).append((log_ns, xyz, stamps))
    return out


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --- scoring ---------------------------------------------------------------------------------

def paired_scans(image_stamps_ns: np.ndarray, scan_stamps_ns: np.ndarray,
                 max_dt_ns: int) -> np.ndarray:
    """
    Return, per image stamp, the index of the nearest scan stamp within ``max_dt_ns`` or -1.

    Ties go to the earlier scan (the node's ``nearest`` policy). ``scan_stamps_ns`` ascending.
    """
    after = np.searchsorted(scan_stamps_ns, image_stamps_ns)
    before = np.clip(after - 1, 0, len(scan_stamps_ns) - 1)
    after = np.clip(after, 0, len(scan_stamps_ns) - 1)
    d_before = np.abs(scan_stamps_ns[before] - image_stamps_ns)
    d_after = np.abs(scan_stamps_ns[after] - image_stamps_ns)
    best = np.where(d_after < d_before, after, before)
    return np.where(np.minimum(d_before, d_after) <= max_dt_ns, best, -1)


def score_registrations(stamps_ns: np.ndarray, T_lidar_cam: np.ndarray, gt: GroundTruth,
                        max_dt_ns: int = NS // 10) -> dict:
    """
    Score camera poses in the LiDAR frame against the ground truth of their pairs.

    :param stamps_ns: ``(K,)`` image stamps of the estimates.
    :param T_lidar_cam: ``(K, 4, 4)`` estimated camera poses in the LiDAR frame.
    :param gt: the drive's ground truth (camera and LiDAR rows).
    :return: ``{'scan_stamp_ns', 'rte_m', 'rre_deg', 'rre_geodesic_deg', 'T_cam_lidar_gt'}``
        arrays of ``(K,)`` (NaN errors where no scan is within ``max_dt_ns``).
    """
    cam, lidar = gt.select('camera'), gt.select('lidar')
    order = np.argsort(lidar.stamp_ns)
    scan_ns = lidar.stamp_ns[order]
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    k = len(stamps_ns)
    out = {'scan_stamp_ns': np.full(k, -1, np.int64), 'rte_m': np.full(k, np.nan),
           'rre_deg': np.full(k, np.nan), 'rre_geodesic_deg': np.full(k, np.nan),
           'T_cam_lidar_gt': np.full((k, 4, 4), np.nan)}
    if k == 0:
        return out
    cam_index = {int(s): i for i, s in enumerate(cam.stamp_ns)}
    scans = paired_scans(stamps_ns, scan_ns, max_dt_ns)
    for i, (stamp, j) in enumerate(zip(stamps_ns, scans)):
        c = cam_index.get(int(stamp))
        if c is None or j < 0:
            continue
        T_gt = inverse(cam.T_map_sensor[c]) @ lidar.T_map_sensor[order[j]]
        T_pred = inverse(T_lidar_cam[i])
        out['scan_stamp_ns'][i] = scan_ns[j]
        out['T_cam_lidar_gt'][i] = T_gt
        out['rte_m'][i] = float(rte(T_pred, T_gt))
        out['rre_deg'][i] = float(rre_protocol(T_pred, T_gt))
        out['rre_geodesic_deg'][i] = float(rre_geodesic(T_pred, T_gt))
    return out


def align_rigid(path_xyz: np.ndarray, true_xyz: np.ndarray) -> np.ndarray:
    """
    Return ``path_xyz`` moved by the rotation and translation that fit it best to ``true_xyz``.

    Least squares without scale (Umeyama / Kabsch). Both ``(K, 3)``, K >= 2.
    """
    mu_a, mu_b = path_xyz.mean(0), true_xyz.mean(0)
    U, _, Vt = np.linalg.svd((path_xyz - mu_a).T @ (true_xyz - mu_b))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    return ((Vt.T @ D @ U.T) @ (path_xyz - mu_a).T).T + mu_b


def keyframe_ape(path_xyz: np.ndarray, true_xyz: np.ndarray) -> float:
    """
    Return the RMS position error of a keyframe path after rigid alignment (no scale), metres.

    :param path_xyz: ``(K, 3)`` estimated positions; ``true_xyz``: ``(K, 3)`` true positions.
    """
    if len(path_xyz) < 2:
        return math.nan
    aligned = align_rigid(path_xyz, true_xyz)
    return float(np.sqrt(np.mean(np.sum((aligned - true_xyz) ** 2, axis=1))))


def _stats(values) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {'count': 0, 'p50': None, 'p95': None, 'mean': None}
    return {'count': int(v.size), 'p50': float(np.percentile(v, 50)),
            'p95': float(np.percentile(v, 95)), 'mean': float(v.mean())}


def compute_metrics(outputs: dict, gt: GroundTruth, play_seconds: float, lidar_frame: str,
                    max_dt_ns: int = NS // 10) -> tuple[dict, dict]:
    """
    Compute the headline numbers of a demo run.

    :return: ``(metrics, series)``: ``metrics`` is JSON-ready; ``series`` holds the per-
        registration arrays and latency samples the figures draw.
    """
    regs = sorted((t for t in outputs['tf'] if t[3].endswith(REGISTERED_SUFFIX)),
                  key=lambda t: t[1])
    stamps = np.array([t[1] for t in regs], dtype=np.int64)
    T_est = np.array([t[4] for t in regs]).reshape(-1, 4, 4)
    scores = score_registrations(stamps, T_est, gt, max_dt_ns)
    diag = [(log, v) for log, name, v in outputs['diagnostics'] if 'registration' in name]
    last = diag[-1][1] if diag else {}
    latency = {
        'registration_ms': [_float(v.get('latency_p50_ms')) for _, v in diag],
        'node_overhead_ms': [_float(v.get('node_overhead_p50_ms')) for _, v in diag],
        'image_transport_lag_ms': [_float(v.get('image_lag_p50_ms')) for _, v in diag],
        'pairing_dt_ms': [abs(_float(v.get('pairing_dt_p50_ms'))) for _, v in diag],
        'image_stamp_to_tf_ms': [(t[0] - t[1]) * 1e-6 for t in regs],
    }
    n = len(regs)
    span_s = (stamps[-1] - stamps[0]) / NS if n > 1 else 0.0
    within = int(np.sum((scores['rte_m'] < 2.0) & (scores['rre_deg'] < 5.0)))
    attempted = int(_float(last.get('registrations', 'nan')) or 0) if last else 0
    metrics = {
        'registrations_published': n,
        'registration_recall_of_attempts': within / attempted if attempted else 0.0,
        'registration_recall': registration_recall(scores['rte_m'], scores['rre_deg'])
        if n else 0.0,
        'median_rte_m': float(np.nanmedian(scores['rte_m'])) if n else None,
        'median_rre_deg': float(np.nanmedian(scores['rre_deg'])) if n else None,
        'median_rre_geodesic_deg': float(np.nanmedian(scores['rre_geodesic_deg'])) if n
        else None,
        'tf_rate_hz': (n - 1) / span_s if span_s > 0 else 0.0,
        'tf_rate_over_play_hz': n / play_seconds if play_seconds > 0 else 0.0,
        'registrations_attempted': int(_float(last.get('registrations', 'nan')) or 0)
        if last else None,
        'dropped_images': int(_float(last.get('dropped_images'))) if last else None,
        'dropped_clouds': int(_float(last.get('dropped_clouds'))) if last else None,
        'dropped_pairs': int(_float(last.get('dropped_pairs'))) if last else None,
        'unmatched_images': int(_float(last.get('unmatched_images'))) if last else None,
        'device': last.get('device'), 'method': last.get('last_method'),
        'latency_ms': {k: _stats(v) for k, v in latency.items()},
        'keyframe_ape_m': None, 'keyframes': 0,
        'lidar_frame': lidar_frame,
    }
    series = {'stamps_ns': stamps, 'T_lidar_cam': T_est, **scores, 'latency': latency}
    if outputs['paths']:
        topic = sorted(outputs['paths'])[0]
        _, path, path_ns = outputs['paths'][topic][-1]
        metrics['keyframes'] = int(len(path))
        metrics['path_topic'] = topic
        lidar = gt.select('lidar')
        index = {int(s): i for i, s in enumerate(lidar.stamp_ns)}
        found = [(k, index[int(s)]) for k, s in enumerate(path_ns) if int(s) in index]
        if len(found) >= 2:
            k, i = (np.array(v) for v in zip(*found))
            true_xyz = lidar.T_map_sensor[i][:, :3, 3]
            metrics['keyframe_ape_m'] = keyframe_ape(path[k], true_xyz)
            series['keyframes_xyz'] = align_rigid(path[k], true_xyz)
            metrics['keyframes_span_s'] = float((path_ns.max() - path_ns.min()) * 1e-9)
    return metrics, series


# --- figures ---------------------------------------------------------------------------------

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (170, 170, 170)
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _bgr(rgb):
    return tuple(int(c) for c in rgb[::-1])


def _text(img, text, org, scale=0.45, colour=BLACK, thickness=1):
    cv2.putText(img, text, (int(org[0]), int(org[1])), FONT, scale, _bgr(colour), thickness,
                cv2.LINE_AA)


def _ticks(lo, hi, n=5):
    if not hi > lo:
        hi = lo + 1.0
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    return np.arange(math.ceil(lo / step) * step, hi + step * 1e-9, step)


class _Axes:
    """A rectangle of an image with data limits, ticks and labels."""

    def __init__(self, img, box, xlim, ylim, title='', xlabel='', ylabel=''):
        self.img, (self.x0, self.y0, self.x1, self.y1) = img, box
        self.xlim = xlim if xlim[1] > xlim[0] else (xlim[0], xlim[0] + 1.0)
        self.ylim = ylim if ylim[1] > ylim[0] else (ylim[0], ylim[0] + 1.0)
        cv2.rectangle(img, (self.x0, self.y0), (self.x1, self.y1), _bgr(BLACK), 1)
        for t in _ticks(*self.xlim):
            x = self.px(t, self.ylim[0])[0]
            cv2.line(img, (x, self.y1), (x, self.y1 + 4), _bgr(BLACK), 1)
            _text(img, f'{t:g}', (x - 12, self.y1 + 18), 0.4)
        for t in _ticks(*self.ylim):
            y = self.px(self.xlim[0], t)[1]
            cv2.line(img, (self.x0 - 4, y), (self.x0, y), _bgr(BLACK), 1)
            cv2.line(img, (self.x0 + 1, y), (self.x1 - 1, y), _bgr((235, 235, 235)), 1)
            _text(img, f'{t:g}', (self.x0 - 48, y + 4), 0.4)
        _text(img, title, (self.x0, self.y0 - 10), 0.55)
        _text(img, xlabel, ((self.x0 + self.x1) // 2 - 40, self.y1 + 38), 0.45)
        _text(img, ylabel, (self.x0 - 50, self.y0 - 10 if not title else self.y0 + 14), 0.4)

    def px(self, x, y):
        fx = (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        fy = (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return (int(round(self.x0 + fx * (self.x1 - self.x0))),
                int(round(self.y1 - fy * (self.y1 - self.y0))))

    def line(self, xs, ys, colour, thickness=2):
        pts = [self.px(x, y) for x, y in zip(xs, ys) if np.isfinite(x) and np.isfinite(y)]
        if len(pts) > 1:
            cv2.polylines(self.img, [np.array(pts, np.int32)], False, _bgr(colour), thickness,
                          cv2.LINE_AA)

    def dots(self, xs, ys, colour, radius=3):
        for x, y in zip(xs, ys):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(self.img, self.px(x, y), radius, _bgr(colour), -1, cv2.LINE_AA)

    def hline(self, y, colour):
        a, b = self.px(self.xlim[0], y), self.px(self.xlim[1], y)
        cv2.line(self.img, a, b, _bgr(colour), 1, cv2.LINE_AA)

    def legend(self, items):
        for i, (label, colour) in enumerate(items):
            y = self.y0 + 16 + 18 * i
            cv2.line(self.img, (self.x1 - 150, y - 4), (self.x1 - 130, y - 4), _bgr(colour), 3)
            _text(self.img, label, (self.x1 - 124, y), 0.42)


def draw_top_view(path: str, true_xy: np.ndarray, reg_xy: np.ndarray, reg_ok: np.ndarray,
                  map_xy: np.ndarray, keyframe_xy: np.ndarray | None = None) -> None:
    """
    Draw the top view: map points, true trajectory, registered camera positions, keyframes.

    All inputs are ``(K, 2)`` map-frame x, y in metres; ``reg_ok`` ``(K,)`` bool (within RR).
    """
    img = np.full((760, 900, 3), 255, np.uint8)
    # The view frames the drive (the map reaches far beyond it), 25 m around.
    track = true_xy if keyframe_xy is None or not len(keyframe_xy) else \
        np.vstack([true_xy, keyframe_xy])
    lo, hi = track.min(0) - 25.0, track.max(0) + 25.0
    span = max(hi - lo)
    box = (70, 40, 70 + 800, 40 + 680)
    scale = min((box[2] - box[0]) / (hi[0] - lo[0]), (box[3] - box[1]) / (hi[1] - lo[1]))
    xlim = (lo[0], lo[0] + (box[2] - box[0]) / scale)
    ylim = (lo[1], lo[1] + (box[3] - box[1]) / scale)
    ax = _Axes(img, box, xlim, ylim, f'Top view (map frame, {span:.0f} m)', 'x [m]', 'y [m]')
    if len(map_xy):
        inside = np.all((map_xy >= (xlim[0], ylim[0])) & (map_xy <= (xlim[1], ylim[1])), axis=1)
        for x, y in map_xy[inside]:
            u, v = ax.px(x, y)
            img[v, u] = (150, 150, 150)
    items = [('true base_link', COLOURS[0]), ('camera, RR ok', COLOURS[2]),
             ('camera, RR fail', COLOURS[1])]
    # Keyframes first, small: the true trajectory and the cameras stay visible on top.
    if keyframe_xy is not None and len(keyframe_xy):
        ax.line(keyframe_xy[:, 0], keyframe_xy[:, 1], COLOURS[3], 3)
        ax.dots(keyframe_xy[:, 0], keyframe_xy[:, 1], COLOURS[3], 2)
        items.append(('keyframes', COLOURS[3]))
    ax.line(true_xy[:, 0], true_xy[:, 1], COLOURS[0], 1)
    ax.dots(reg_xy[reg_ok, 0], reg_xy[reg_ok, 1], COLOURS[2], 3)
    ax.dots(reg_xy[~reg_ok, 0], reg_xy[~reg_ok, 1], COLOURS[1], 3)
    ax.legend(items)
    cv2.imwrite(path, img)


def draw_errors(path: str, t_s: np.ndarray, rte_m: np.ndarray, rre_deg: np.ndarray) -> None:
    """Draw RTE [m] and RRE [deg] over drive time [s], with the RR bounds."""
    img = np.full((620, 900, 3), 255, np.uint8)
    xlim = (0.0, float(np.nanmax(t_s)) if len(t_s) else 1.0)
    for k, (values, label, bound, unit) in enumerate(((rte_m, 'RTE', 2.0, 'm'),
                                                      (rre_deg, 'RRE (protocol)', 5.0, 'deg'))):
        finite = values[np.isfinite(values)]
        top = max(float(finite.max()) if finite.size else 0.0, bound) * 1.1
        ax = _Axes(img, (80, 40 + 290 * k, 870, 250 + 290 * k), xlim, (0.0, top),
                   f'{label} per registration [{unit}]', 'drive time [s]' if k else '')
        ax.hline(bound, COLOURS[1])
        ax.line(t_s, values, COLOURS[0], 1)
        ax.dots(t_s, values, COLOURS[0], 2)
        ax.legend([(label, COLOURS[0]), (f'RR bound {bound:g} {unit}', COLOURS[1])])
    cv2.imwrite(path, img)


def draw_latency(path: str, latency: dict) -> None:
    """Draw one histogram per latency stage (``{stage: samples in ms}``)."""
    stages = [(k, np.asarray([v for v in vals if np.isfinite(v)])) for k, vals in
              latency.items()]
    stages = [(k, v) for k, v in stages if v.size]
    rows = max(len(stages), 1)
    img = np.full((40 + 170 * rows, 900, 3), 255, np.uint8)
    for i, (stage, values) in enumerate(stages):
        hi = float(np.percentile(values, 99)) * 1.05 + 1e-6
        counts, edges = np.histogram(np.clip(values, 0, hi), bins=30, range=(0.0, hi))
        ax = _Axes(img, (80, 40 + 170 * i, 870, 160 + 170 * i), (0.0, hi),
                   (0.0, float(counts.max()) * 1.1),
                   f'{stage}: p50 {np.median(values):.1f} ms, p95 '
                   f'{np.percentile(values, 95):.1f} ms (n={values.size})')
        for c, a, b in zip(counts, edges[:-1], edges[1:]):
            p0, p1 = ax.px(a, 0), ax.px(b, c)
            cv2.rectangle(img, (p0[0] + 1, p1[1]), (p1[0] - 1, p0[1]), _bgr(COLOURS[i % 5]), -1)
    if not stages:
        _text(img, 'no latency samples', (80, 80))
    cv2.imwrite(path, img)


def save_overlay(path: str, rgb: np.ndarray, caption: str) -> None:
    """Write an overlay image with a caption band."""
    band = np.full((28, rgb.shape[1], 3), 255, np.uint8)
    img = np.vstack([band, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)])
    _text(img, caption, (6, 19), 0.5)
    cv2.imwrite(path, img)


# --- the report ------------------------------------------------------------------------------

def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return 'n/a'
    if isinstance(value, float):
        return f'{value:.{digits}g}'
    return str(value)


def write_report(out_dir: Path, metrics: dict, figures: dict[str, str]) -> Path:
    """Write ``report.md`` (headline table, figures) and ``metrics.json`` into ``out_dir``."""
    with open(out_dir / 'metrics.json', 'w', encoding='utf-8') as f:
        json.dump(metrics, f, indent=2, default=float)
        f.write('\n')
    lat = metrics['latency_ms']
    rows = [
        ('Registration recall (RTE < 2 m, RRE < 5 deg) of published TF',
         f"{100 * metrics['registration_recall']:.1f} %"),
        ('Registration recall of all attempted registrations (refused ones count as misses)',
         f"{100 * metrics['registration_recall_of_attempts']:.1f} %"),
        ('Median RTE', f"{_fmt(metrics['median_rte_m'])} m"),
        ('Median RRE (protocol / geodesic)', f"{_fmt(metrics['median_rre_deg'])} / "
         f"{_fmt(metrics['median_rre_geodesic_deg'])} deg"),
        ('Published TF rate', f"{_fmt(metrics['tf_rate_hz'])} Hz "
         f"({metrics['registrations_published']} transforms)"),
        ('Registrations attempted', _fmt(metrics['registrations_attempted'])),
        ('Dropped images / clouds / pairs', f"{_fmt(metrics['dropped_images'])} / "
         f"{_fmt(metrics['dropped_clouds'])} / {_fmt(metrics['dropped_pairs'])}"),
        ('Unmatched images', _fmt(metrics['unmatched_images'])),
        ('Keyframe APE (rigidly aligned)', 'n/a (no multiview keyframes)'
         if metrics.get('keyframe_ape_m') is None
         else f"{_fmt(metrics['keyframe_ape_m'])} m over {metrics['keyframes']} keyframes "
         f"spanning {_fmt(metrics['keyframes_span_s'])} s of drive"),
        ('Registration time p50 / p95', f"{_fmt(lat['registration_ms']['p50'])} / "
         f"{_fmt(lat['registration_ms']['p95'])} ms"),
        ('Image stamp to TF p50', f"{_fmt(lat['image_stamp_to_tf_ms']['p50'])} ms"),
    ]
    run = metrics.get('run', {})
    lines = ['# i2p_registration demo report', '',
             f"Synthetic drive: {_fmt(run.get('duration_s'))} s, seed {run.get('seed')}, "
             f"method {metrics.get('method') or run.get('method')} on "
             f"{metrics.get('device') or run.get('device')}; nodes: "
             f"{', '.join(run.get('nodes', []))}; multiview motion prior "
             f"{run.get('multiview_odometry', 'none')}. {run.get('note', '')}".rstrip(), '',
             '| figure | value |', '|---|---|']
    lines += [f'| {a} | {b} |' for a, b in rows]
    captions = {'top_view': 'Top view: true trajectory, registered camera positions, '
                'multiview keyframes (aligned to the truth), map',
                'errors': 'Registration error over time',
                'latency': 'Latency per stage (diagnostics samples and TF arrival)'}
    for key, file in figures.items():
        caption = captions.get(key, key.replace('_', ' '))
        lines += ['', f'## {caption}', '', f'![{caption}]({file})']
    lines.append('')
    path = out_dir / 'report.md'
    path.write_text('\n'.join(lines), encoding='utf-8')
    return path
