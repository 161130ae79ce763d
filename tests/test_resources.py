"""The data the package needs at run time is found through one module, and the wheel ships all of it."""
import fnmatch
import tomllib
from pathlib import Path

from asr_bench import resources

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asr_bench"


def test_package_folders_are_found():
    assert (resources.csrc_dir() / "rasterize" / "cpu.cpp").is_file()
    assert (resources.csrc_dir() / "meta_upscale" / "cpu.cpp").is_file()
    assert (resources.published_dir() / "gsasr.csv").is_file()
    assert (resources.templates_dir() / "report.html.j2").is_file()


def test_everything_lives_inside_the_package_with_no_remaps():
    """No package-dir remap: a checkout, an editable install and a wheel read the same tree."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "package-dir" not in setuptools
    assert not (ROOT / "methods").exists() and not (ROOT / "csrc").exists()
    assert resources.csrc_dir().is_relative_to(PACKAGE) and resources.templates_dir().is_relative_to(PACKAGE)


def test_every_runtime_file_is_package_data_of_the_wheel():
    """The package-data globs must cover every non-Python file of csrc/ and published/."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in (("asr_bench.csrc", "csrc"), ("asr_bench.published", "published")):
        patterns = setuptools["package-data"][package]
        for path in (PACKAGE / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".py":
                relative = path.relative_to(PACKAGE / folder).as_posix()
                assert any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(relative, p.removeprefix("**/"))
                           for p in patterns), f"{folder}/{relative} would be missing from the wheel"
    for folder in (PACKAGE / "csrc", PACKAGE / "published"):
        assert (folder / "__init__.py").is_file(), f"{folder} must be a package for setuptools' find to ship it"
