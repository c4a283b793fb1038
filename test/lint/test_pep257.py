# Copyright 2015 Open Source Robotics Foundation, Inc.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

import os

import pytest

ament_pep257_main = pytest.importorskip(
    'ament_pep257.main', reason='ament_pep257 is not installed (make setup installs it)').main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    rc = ament_pep257_main(argv=[
        os.path.join(REPO_ROOT, name) for name in ('i2p_registration', 'test', 'benchmarks')
        if os.path.isdir(os.path.join(REPO_ROOT, name))])
    assert rc == 0, 'Found code style errors / warnings'
