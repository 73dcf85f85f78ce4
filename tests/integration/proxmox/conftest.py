"""The lab fixtures of tests/lab (isolated state folder and net, `lab down` in the finalizer)."""

from tests.lab import conftest as lab_conftest

make_lab = lab_conftest.make_lab
