"""The orders tests' staff users: the per-customer analytics endpoints need one."""

from tests.orders.conftest import make_admin  # noqa: F401
