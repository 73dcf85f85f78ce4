"""The lab fixtures of tests/lab (isolated state folder and net, `lab down` in the finalizer), for every
integration test that starts its own lab."""

from tests.lab import conftest as lab_conftest

make_lab = lab_conftest.make_lab
