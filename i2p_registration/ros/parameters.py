"""
Declare ROS parameters from the typed configuration and validate every change with it.

Each :class:`~i2p_registration.core.config.ParameterSpec` becomes a declared parameter with a
``ParameterDescriptor`` (type, description, allowed values in words, a numeric range where the
spec has one, read-only for the restart-only ones). :class:`ParameterValidator` is the
set-parameters callback: it checks every value against its spec and the whole configuration
against its types, so an invalid value is refused with the spec's message, at start-up (overrides
from the command line or a parameters file) and in later ``set_parameters`` calls alike.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from i2p_registration.core.config import NodeConfig, ParameterSpec
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
from rclpy.node import Node
from rclpy.parameter import Parameter

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def make_descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """Return the ``ParameterDescriptor`` of one spec (ranges inclusive; no step)."""
    descriptor = ParameterDescriptor(
        name=spec.name, type=_TYPES[spec.type], description=spec.description,
        additional_constraints=spec.constraints(), read_only=spec.read_only)
    if spec.min_value is not None and spec.max_value is not None:
        if spec.type is float:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0)]
        elif spec.type is int:
            descriptor.integer_range = [IntegerRange(
                from_value=int(spec.min_value), to_value=int(spec.max_value), step=1)]
    return descriptor


class ParameterValidator:
    """
    The set-parameters callback of a node whose parameters are one or more ``NodeConfig`` types.

    :param config_types: the configuration types whose specs were declared.
    :param current: ``{dotted name: value}`` of every declared parameter, kept up to date.
    :param on_change: called with the new configurations (one per type, in order) after a change
        was accepted; it may not fail.
    :param check: called with the new configurations before a change is accepted; raises
        ``ValueError`` to refuse it (checks across parameters).
    """

    def __init__(self, config_types: Iterable[type], current: Mapping[str, Any],
                 on_change: Callable[[list[NodeConfig]], None] | None = None,
                 check: Callable[[list[NodeConfig]], None] | None = None):
        self.config_types = list(config_types)
        self.specs = {spec.name: spec for cls in self.config_types
                      for spec in cls.parameter_specs()}
        self.current = dict(current)
        self.on_change = on_change
        self.check = check

    def configs(self, flat: Mapping[str, Any] | None = None) -> list[NodeConfig]:
        """Build every configuration from ``flat`` (default: the current values)."""
        flat = self.current if flat is None else flat
        result = []
        for cls in self.config_types:
            names = {spec.name for spec in cls.parameter_specs()}
            result.append(cls.from_flat({k: v for k, v in flat.items() if k in names}))
        return result

    def __call__(self, parameters: list[Parameter]) -> SetParametersResult:
        """Accept ``parameters`` when each is valid and the configuration they make is."""
        updated = dict(self.current)
        try:
            for parameter in parameters:
                spec = self.specs.get(parameter.name)
                if spec is None:
                    continue
                if parameter.type_ == Parameter.Type.NOT_SET:
                    raise ValueError(f'parameter {parameter.name!r} cannot be undeclared')
                updated[parameter.name] = spec.validate(parameter.value)
            configs = self.configs(updated)
            if self.check is not None:
                self.check(configs)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        changed = updated != self.current
        self.current = updated
        if changed and self.on_change is not None:
            self.on_change(configs)
        return SetParametersResult(successful=True)


def declare_config_parameters(node: Node, config_types: Iterable[type],
                              on_change: Callable[[list[NodeConfig]], None] | None = None,
                              check: Callable[[list[NodeConfig]], None] | None = None
                              ) -> tuple[list[NodeConfig], ParameterValidator]:
    """
    Declare the parameters of ``config_types`` on ``node`` and install their validation.

    The validator is installed first, so overrides given at start-up are checked as well;
    ``check`` runs once more on the complete configuration after the declarations.

    :return: the configurations built from the declared values, and the validator.
    :raises ValueError: naming the parameter, the value and what is allowed when an override is
        invalid (rclpy's ``InvalidParameterValueException`` and type errors are turned into it).
    """
    config_types = list(config_types)
    specs = [spec for cls in config_types for spec in cls.parameter_specs()]
    validator = ParameterValidator(config_types, {s.name: s.default for s in specs})
    node.add_on_set_parameters_callback(validator)
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, make_descriptor(spec))
        except Exception as error:  # noqa: B902 (rclpy raises several unrelated types here)
            raise ValueError(f'invalid parameter {spec.name!r}: {error}') from error
    configs = validator.configs()
    if check is not None:
        check(configs)
    validator.on_change, validator.check = on_change, check
    return configs, validator
