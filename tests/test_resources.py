"""The data the package needs at run time is found through one module, and the wheel ships all of it."""
import fnmatch
import tomllib
from pathlib import Path

from asr_bench import resources

ROOT = Path(__file__).resolve().parent.parent


def test_checkout_folders_are_found():
    assert (resources.csrc_dir() / "rasterize" / "cpu.cpp").is_file()
    assert (resources.csrc_dir() / "meta_upscale" / "cpu.cpp").is_file()
    assert (resources.published_dir() / "gsasr.csv").is_file()
    assert (resources.templates_dir() / "report.html.j2").is_file()


def test_every_runtime_file_is_package_data_of_the_wheel():
    """pyproject maps csrc/ and results/published/ into the package; its globs must cover every file there."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in (("asr_bench.csrc", "csrc"), ("asr_bench.published", "results/published")):
        assert setuptools["package-dir"][package] == folder and package in setuptools["packages"]
        patterns = setuptools["package-data"][package]
        for path in (ROOT / folder).rglob("*"):
            if path.is_file():
                relative = path.relative_to(ROOT / folder).as_posix()
                assert any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(relative, p.removeprefix("**/"))
                           for p in patterns), f"{folder}/{relative} would be missing from the wheel"
    methods = [p.name for p in (ROOT / "methods").iterdir() if (p / "__init__.py").is_file()]
    assert {f"asr_bench.methods.{m}" for m in methods} <= set(setuptools["packages"])
