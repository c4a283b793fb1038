"""Tests for i2p-export: TorchScript tracing of the ray network, equivalence within 1e-4."""

import json

from i2p_registration.core.models.checkpoint import save_checkpoint
from i2p_registration.core.models.ray_net import make_config, RayI2PNet
from i2p_registration.training.export import (example_inputs, export_torchscript, main,
                                              max_differences, OUTPUTS)
import pytest
import torch

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings('ignore:`torch.jit:DeprecationWarning')

TINY = {'channels': 16, 'heads': 2, 'layers': 1, 'image_widths': (8, 8, 16),
        'point_samples': (64, 16), 'point_neighbours': (8, 8), 'point_widths': (16, 16),
        'pose_hidden': 32, 'min_visible': 4}


def test_traced_network_matches_eager_on_new_inputs(tmp_path):
    torch.manual_seed(0)
    net = RayI2PNet(make_config('small', **TINY)).eval()
    report = export_torchscript(net, tmp_path / 'net.ts', (32, 64), 512, meta={'git': 'abc'})
    assert report['max_difference'] <= 1e-4 and set(report['differences']) == set(OUTPUTS)
    extra = {'config.json': '', 'meta.json': ''}
    loaded = torch.jit.load(str(tmp_path / 'net.ts'), _extra_files=extra)
    assert json.loads(extra['config.json']) == net.config.to_dict()
    meta = json.loads(extra['meta.json'])
    assert meta['image_hw'] == [32, 64] and meta['n_points'] == 512 and meta['git'] == 'abc'
    # Inputs the trace never saw: other points, image and focal length.
    image, points, K = example_inputs((32, 64), 512, seed=7)
    K = K * torch.tensor([[[1.3], [1.3], [1.0]]])
    with torch.no_grad():
        outputs = loaded(image, points * 0.5, K)
        eager = net(image, points * 0.5, K)
    for name, value in zip(OUTPUTS, outputs):
        torch.testing.assert_close(value, eager[name], atol=1e-4, rtol=0, msg=name)
    T = outputs[0][0]
    torch.testing.assert_close(T[:3, :3] @ T[:3, :3].T, torch.eye(3), atol=1e-5, rtol=0)
    diff = max_differences(torch.jit.load(str(tmp_path / 'net.ts')), loaded,
                           example_inputs((32, 64), 512, 3))
    assert max(diff.values()) == 0.0


def test_export_command_reads_the_input_size_from_the_checkpoint(tmp_path, capsys):
    torch.manual_seed(1)
    net = RayI2PNet(make_config('small', **TINY))
    data = {'train': {'input_size': {'image_hw': [32, 64], 'n_points': 256}}}
    save_checkpoint(tmp_path / 'net.pt', net, data, 'abc1234')
    assert main(['--checkpoint', str(tmp_path / 'net.pt'), '--output',
                 str(tmp_path / 'net.ts')]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['max_difference'] <= 1e-4
    extra = {'meta.json': ''}
    torch.jit.load(str(tmp_path / 'net.ts'), _extra_files=extra)
    meta = json.loads(extra['meta.json'])
    assert (meta['image_hw'], meta['n_points'], meta['git_revision']) == ([32, 64], 256,
                                                                          'abc1234')
    torch.save({'weights': 1}, tmp_path / 'other.pt')
    assert main(['--checkpoint', str(tmp_path / 'other.pt'), '--output',
                 str(tmp_path / 'x.ts')]) == 2
    assert 'not a RayI2PNet checkpoint' in capsys.readouterr().err
    with pytest.raises(ValueError, match='differs from the eager one'):
        export_torchscript(net, tmp_path / 'y.ts', (32, 64), 256, tolerance=-1.0)
