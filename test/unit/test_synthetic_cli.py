"""The i2p-synth command line and the preview images."""

import json

import cv2
from i2p_registration.data.preview import depth_colors, overlay
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
from i2p_registration.tools.synth import main
import numpy as np
import pytest

SMALL_ARGS = [arg for key, value in SMALL_OVERRIDES.items()
              for arg in ('--set', f'{key}={json.dumps(value)}')]


def test_cli_writes_kitti_bag_previews_and_summary(tmp_path, capsys):
    out = tmp_path / 'run'
    rc = main(SMALL_ARGS + ['--split', 'test', '--index', '1', '--out', str(out),
                            '--duration', '0.25', '--preview', '1', '--quiet',
                            '--image-format', 'png'])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['seed'] == 19 and summary['split'] == 'test'
    kitti, bag = summary['outputs']
    assert kitti['frames'] >= 2 and bag['scans'] == kitti['frames']
    assert (out / 'kitti' / 'sequences' / '00' / 'calib.txt').is_file()
    assert (out / 'bag' / 'metadata.yaml').is_file() and (out / 'ground_truth.csv').is_file()
    top = cv2.imread(str(out / 'preview' / 'top_view.png'))
    assert top is not None and top.shape[0] > 100
    assert len(list((out / 'preview').glob('overlay_*.png'))) == 1


def test_cli_rejects_bad_config_and_existing_bag(tmp_path, capsys):
    assert main(['--set', 'lidar.preset=hdl128', '--out', str(tmp_path)]) == 2
    assert 'lidar.preset' in capsys.readouterr().err
    (tmp_path / 'bag').mkdir()
    assert main(['--format', 'bag', '--out', str(tmp_path)]) == 2
    assert 'exists' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['--seed', '1', '--split', 'train'])


def test_overlay_colours_points_by_depth():
    sim = Simulator(load_synth_config(overrides={**SMALL_OVERRIDES, 'camera.noise_std': 0.0}), 2)
    frame, depth = sim.image(sim.start_ns, 0)
    cloud = sim.scan(sim.start_ns, 0)
    img = overlay(frame.image, cloud.points, sim.T_cam_lidar, sim.camera, radius=0)
    changed = np.any(img != frame.image, axis=-1)
    assert 0.05 < changed.mean() < 0.6
    near, far = depth_colors(np.array([2.0, 55.0]))
    assert near[0] > near[2] and far[2] > far[0]             # near red, far blue
