"""No input, however mangled, makes an exception other than the documented ones escape a SLURM collector."""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomade.exporter.collectors import collector_classes
from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.runner import CommandError, CommandResult

US = "\x1f"
# Lines built from the tokens real SLURM output is made of, so the fuzzing reaches past the header checks.
TOKENS = st.sampled_from(
    [
        US,
        "|",
        " ",
        "=",
        ",",
        "\n",
        "JOBID",
        "STATE",
        "PARTITION",
        "NodeName=c01",
        "State=IDLE+DRAIN",
        "CPUTot=2",
        "CPUAlloc=x",
        "RealMemory=",
        "Reason=a b [root@2024-01-01T00:00:00]",
        "PENDING",
        "RUNNING",
        "123_[1-5%2]",
        "N/A",
        "(null)",
        "2024-13-45T99:99:99",
        "1-00:00:00",
        "UNLIMITED",
        "COMPLETED",
        "CANCELLED by 0",
        "0:11",
        "4000Mn",
        "1234K",
        "gres/gpu=2",
        "c[01-",
        "\ufffd",
        "-1",
        "nan",
        "inf",
        "99999999999999999999",
        "PartitionName=p",
        "TotalCPUs=4",
        "Nodes=c[01-02]",
        "JobIDRaw",
        "12.batch",
    ]
)
TEXT = st.one_of(st.text(max_size=400), st.lists(TOKENS, max_size=80).map("".join))


class RandomRunner:
    def __init__(self, text: str) -> None:
        self.text = text

    def run(self, argv, *, timeout=None, ttl=None):
        return CommandResult(tuple(argv), self.text, "", 0.0, 0.0)


CONTROLLER = [name for name, cls in collector_classes().items() if cls.mode == "controller"]


@pytest.mark.parametrize("name", CONTROLLER)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_controller_collectors_survive_any_command_output(name, text):
    cls = collector_classes()[name]
    with tempfile.TemporaryDirectory() as d:
        col = cls(CollectorContext(runner=RandomRunner(text), state_dir=Path(d), clock=lambda: 1.7e9))
        out = col.new_set()
        try:
            col.collect(out)
        except (CollectorError, CommandError):
            return
        finally:
            col.close()
        out.families()  # exposition must build too
