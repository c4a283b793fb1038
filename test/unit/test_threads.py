"""CPU thread limits of the numerical libraries."""

from i2p_registration.core.threads import set_cpu_threads, single_threaded_blas
import pytest
from threadpoolctl import threadpool_info, threadpool_limits
import torch


def _blas_threads():
    return [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']


def test_set_cpu_threads_limits_blas_and_torch_and_zero_leaves_them():
    before = torch.get_num_threads()
    with threadpool_limits(limits=2):
        try:
            set_cpu_threads(0)
            assert _blas_threads() and set(_blas_threads()) == {2}
            set_cpu_threads(1)
            assert set(_blas_threads()) == {1} and torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(before)
    with pytest.raises(ValueError, match='threads must be >= 0'):
        set_cpu_threads(-1)


def test_single_threaded_blas_is_a_scoped_limit():
    with threadpool_limits(limits=2, user_api='blas'):
        with single_threaded_blas():
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {2}
