"""Tests for RayI2PNet checkpoints: round trip, config mismatch, refusing code-running pickles."""

import os
import pickle

from i2p_registration.core.models.checkpoint import (load_checkpoint, load_model,
                                                     save_checkpoint)
from i2p_registration.core.models.ray_net import make_config, RayI2PNet
import pytest
import torch

torch.set_num_threads(1)

TINY = {'channels': 16, 'heads': 2, 'layers': 1, 'image_widths': (8, 8, 16),
        'point_samples': (64, 16), 'point_neighbours': (8, 8), 'point_widths': (16, 16),
        'pose_hidden': 32, 'min_visible': 4}
DATA = {'worlds': [1, 2, 3], 'protocol': 'same_frame', 'seed': 7}


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = RayI2PNet(make_config('small', **TINY))
    path = save_checkpoint(tmp_path / 'net.pt', net, DATA, 'abc1234',
                           {'rr': 0.9, 'epoch': 3}, {'optimizer_lr': 1e-3})
    loaded, ckpt = load_model(path, make_config('small', **TINY))
    assert ckpt.data == DATA and ckpt.git_revision == 'abc1234'
    assert ckpt.metrics == {'rr': 0.9, 'epoch': 3} and ckpt.extra == {'optimizer_lr': 1e-3}
    assert ckpt.config == net.config and not loaded.training
    g = torch.Generator().manual_seed(1)
    image, points = torch.rand(1, 3, 32, 64, generator=g), torch.randn(1, 128, 3, generator=g)
    K = torch.tensor([[[50.0, 0.0, 31.5], [0.0, 50.0, 15.5], [0.0, 0.0, 1.0]]])
    with torch.inference_mode():
        a, b = net.eval()(image, points, K), loaded(image, points, K)
    torch.testing.assert_close(a['T_cam_lidar'], b['T_cam_lidar'], atol=0, rtol=0)
    assert load_checkpoint(path).config == net.config
    with pytest.raises(ValueError, match='git revision'):
        save_checkpoint(tmp_path / 'x.pt', net, DATA, '')


def test_mismatched_config_is_a_clear_error(tmp_path):
    net = RayI2PNet(make_config('small', **TINY))
    path = save_checkpoint(tmp_path / 'net.pt', net, DATA, 'abc1234')
    with pytest.raises(ValueError, match=r'different config \(channels: checkpoint 16 != '
                                         r'expected 32.*layers: checkpoint 1 != expected 2'):
        load_model(path, make_config('small', **{**TINY, 'channels': 32, 'layers': 2}))
    state = torch.load(path, weights_only=True)
    state['state_dict']['ray_head.mlp.2.weight'] = torch.zeros(3, 3)
    torch.save(state, tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='weights do not fit'):
        load_model(tmp_path / 'bad.pt')
    torch.save({'weights': 1}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='not a RayI2PNet checkpoint'):
        load_checkpoint(tmp_path / 'other.pt')


class _Exploit:
    """Unpickling this would create a file (stand-in for arbitrary code execution)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_malicious_pickle_checkpoint_is_refused_without_running_it(tmp_path):
    target = str(tmp_path / 'pwned')
    path = tmp_path / 'evil.pt'
    torch.save({'format': 'i2p_registration.ray_i2p/1', 'payload': _Exploit(target)}, path)
    with pytest.raises(ValueError, match='refusing to load'):
        load_checkpoint(path)
    assert not os.path.exists(target)
    raw = tmp_path / 'evil.pkl'
    raw.write_bytes(pickle.dumps(_Exploit(target), protocol=2))
    with pytest.raises(ValueError, match='refusing to load'):
        load_model(raw)
    assert not os.path.exists(target)
