import subprocess
import sys

HEAVY = ("numpy", "pandas", "torch", "sklearn", "scipy", "torch_geometric")


def test_exporter_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from nomade.exporter import cli, catalog\n"
        "from nomade.exporter.collectors import collector_classes\n"
        "collector_classes()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
