"""Static checks of the one image every project role runs from, parsed with dockerfile-parse (no
Docker engine here to build it; `make lint` runs hadolint on it)."""

from __future__ import annotations

import fnmatch
import re

import pytest
from dockerfile_parse import DockerfileParser

from tests.ops.compose_stack import APP_ROLES, REPO_DIR, services

DOCKERFILE = REPO_DIR / "Dockerfile"


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(fileobj=DOCKERFILE.open("rb"))
    return parser


def dockerignore_patterns() -> list[str]:
    lines = (REPO_DIR / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns)


def test_every_stage_builds_from_python_311_slim(dockerfile: DockerfileParser) -> None:
    bases = [i["value"].split()[0] for i in dockerfile.structure if i["instruction"] == "FROM"]
    assert bases and set(bases) == {"python:3.11-slim"}


def test_the_image_runs_as_a_non_root_user(dockerfile: DockerfileParser) -> None:
    users = [i["value"].strip() for i in dockerfile.structure if i["instruction"] == "USER"]
    assert users, "no USER instruction: the app would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # The user is created in the image before it is used.
    assert f"--uid {user}" in dockerfile.content or f" {user}" in dockerfile.content


def test_copied_sources_exist_and_are_not_excluded_from_the_build_context(
    dockerfile: DockerfileParser,
) -> None:
    patterns = dockerignore_patterns()
    copies = [i["value"].split() for i in dockerfile.structure if i["instruction"] == "COPY"]
    checked = 0
    for args in copies:
        if any(a.startswith("--from") for a in args):
            continue
        for source in [a for a in args[:-1] if not a.startswith("--")]:
            assert (REPO_DIR / source).exists(), f"COPY {source}: no such file in the repository"
            assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
            checked += 1
    assert checked >= 5


def test_the_image_installs_the_project_and_what_the_roles_run(dockerfile: DockerfileParser) -> None:
    runs = " ".join(i["value"] for i in dockerfile.structure if i["instruction"] == "RUN")
    assert "pip wheel" in runs and "pip install" in runs
    pyproject = (REPO_DIR / "pyproject.toml").read_text()
    # Every role's executable comes from a declared dependency or the project itself.
    for role in APP_ROLES:
        command = services()[role]["command"]
        program = command[0] if command[0] != "sh" else "python"
        assert program == "python" or f'"{program}' in pyproject, f"{role} runs {program}, not installed"
    assert (REPO_DIR / "consumers" / "__main__.py").is_file(), (
        "python -m consumers needs consumers/__main__.py"
    )
    assert (REPO_DIR / "manage.py").is_file()


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", "var", "tests"):
        assert ignored(path, patterns), path


def test_every_python_package_of_the_project_is_in_the_image(dockerfile: DockerfileParser) -> None:
    """A new Django app or package must be copied into the image, or the roles fail at import."""
    final_stage = dockerfile.content.rsplit("\nFROM ", 1)[-1]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", final_stage, flags=re.MULTILINE))
    # tests, bench (the benchmark harness) and scripts (the local supervisor and the checks, which
    # reach a stack from outside) run from a checkout, never inside the image.
    packages = {p.parent.name for p in REPO_DIR.glob("*/__init__.py")} - {"tests", "bench", "scripts"}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
