"""The examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_runs_on_local_disk(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "protobuf round trip ok" in out
    assert "download limit works" in out
    assert "after delete, exists=False" in out
    assert (tmp_path / "my-bucket" / "datasets" / "blob.bin").stat().st_size == 64 * 1024 * 1024


def test_readme_yaml_example_loads(tmp_path: Path) -> None:
    import re

    from flytestore import Config

    text = (ROOT / "README.md").read_text()
    yaml_text = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    path = tmp_path / "flyte.yaml"
    path.write_text(yaml_text.replace("/etc/s3/secret", str(secret)))
    config = Config.from_yaml(path)
    assert config.primary_kind() == "s3" and config.container == "my-bucket"
    assert config.limits.max_download_mbs == 8 and config.cache.max_size_mbs == 64
    assert config.redis.addr == "127.0.0.1:6379"


def test_readme_documents_the_defaults_of_the_flytestore_additions() -> None:
    import re

    from flytestore import Config

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    additions = next(b for b in blocks if "maxConcurrentOperations" in b)
    config = Config.from_dict(yaml.safe_load("storage:\n  type: mem\n" + additions))
    default = Config(type="mem")
    assert config.retries == default.retries
    assert config.limits.max_concurrent_operations == default.limits.max_concurrent_operations
    assert config.limits.copy_split_threshold_mbs == default.limits.copy_split_threshold_mbs
