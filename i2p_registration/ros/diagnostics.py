"""
The registration node's ``/diagnostics`` status: keys, levels and the message.

:func:`registration_level` decides OK / WARN / ERROR from a snapshot of the node's counters;
:func:`make_diagnostic_array` turns the snapshot into a ``diagnostic_msgs/DiagnosticArray``
(values are written with fixed formatting: floats with 3 decimals, NaN as ``nan``).
"""

from __future__ import annotations

from typing import Any, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from i2p_registration.ros.conversions import ns_to_stamp

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR

# Every key the registration node reports, in the order written.
REGISTRATION_KEYS = (
    'image_rate_hz', 'cloud_rate_hz', 'camera_info_rate_hz', 'image_lag_p50_ms',
    'pairing_dt_last_ms', 'pairing_dt_p50_ms', 'queue_depth', 'images_buffered',
    'clouds_buffered', 'dropped_images', 'dropped_clouds', 'dropped_pairs', 'unmatched_images',
    'buffer_resets', 'input_errors', 'last_input_error', 'registrations', 'published',
    'latency_p50_ms', 'latency_p95_ms', 'node_overhead_p50_ms', 'node_overhead_p95_ms',
    'last_score', 'last_status',
    'last_method', 'consecutive_failures', 'device', 'mode', 'calibration_converged',
    'last_failure_reason',
)
# Consecutive failed or low-confidence registrations that make the status an ERROR.
ERROR_AFTER_FAILURES = 5


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f'{value:.3f}'
    return str(value)


def registration_level(values: Mapping[str, Any], new_input_errors: int) -> tuple[int, str]:
    """
    Return the level and the one-line message of the registration status.

    ERROR: ``ERROR_AFTER_FAILURES`` registrations in a row failed or were not confident, or
    images arrive without any camera calibration. WARN: no images or no clouds in the rate
    window, an input error since the last report, the last registration not ok, or nothing
    registered yet. OK otherwise.

    :param values: the snapshot, with the keys of :data:`REGISTRATION_KEYS`.
    :param new_input_errors: bad input messages since the last report.
    """
    if values['consecutive_failures'] >= ERROR_AFTER_FAILURES:
        return ERROR, (f'{values["consecutive_failures"]} registrations in a row not published: '
                       f'{values["last_failure_reason"]}')
    if values['image_rate_hz'] > 0 and values['camera_info_rate_hz'] == 0 \
            and values['registrations'] == 0 and values['input_errors'] > 0:
        return ERROR, f'images but no usable camera calibration: {values["last_input_error"]}'
    if values['image_rate_hz'] == 0 or values['cloud_rate_hz'] == 0:
        missing = [name for name, key in (('images', 'image_rate_hz'),
                                          ('clouds', 'cloud_rate_hz')) if values[key] == 0]
        return WARN, 'no ' + ' and no '.join(missing) + ' received recently'
    if new_input_errors:
        return WARN, f'{new_input_errors} bad input message(s): {values["last_input_error"]}'
    if values['registrations'] == 0:
        return WARN, 'waiting for the first image-cloud pair'
    if values['last_status'] != 'ok':
        return WARN, f'last registration {values["last_status"]}: ' \
                     f'{values["last_failure_reason"]}'
    return OK, 'registering'


def make_diagnostic_array(stamp_ns: int, name: str, hardware_id: str, level: int,
                          message: str, values: Mapping[str, Any]) -> DiagnosticArray:
    """Build a ``DiagnosticArray`` with one status holding ``values`` as key-value pairs."""
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=_format(v))
                                      for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = ns_to_stamp(max(int(stamp_ns), 0))
    return array
