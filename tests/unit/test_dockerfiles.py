"""Static checks of images/*/Dockerfile (no Docker daemon or registry is needed).

Each Dockerfile is parsed into stages and instructions; the invariants that keep images
reproducible and safe are asserted: pinned base images, a non-root final USER, no remote ADD, no
secret-looking ENV/ARG, dependency layers (requirements.lock) before source layers, and the
per-image contract (CUDA + Unsloth pins without llama-cpp-python for training, llama-cpp-python for
serving). The build context is checked too: every COPY source exists and survives .dockerignore.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL)", re.IGNORECASE)
SOURCE_DIRS = ("components", "pipelines", "serving")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    path: Path
    text: str
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolve(self, ref: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), ref)


def parse(path: Path) -> Dockerfile:
    text = path.read_text()
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages and keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return Dockerfile(path, text, global_args, stages)


@pytest.fixture(params=DOCKERFILES, ids=lambda p: p.parent.name)
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse(request.param)


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_all_images_are_here() -> None:
    assert {p.parent.name for p in DOCKERFILES} >= {"base", "train-gpu", "serve", "mlflow"}


def test_base_images_are_pinned(dockerfile: Dockerfile) -> None:
    seen: set[str] = set()
    for stage in dockerfile.stages:
        ref = dockerfile.resolve(stage.base)
        if ref != "scratch" and ref not in seen:
            assert "$" not in ref, f"{dockerfile.path}: unresolved base {stage.base}"
            last = ref.split("@")[0].rsplit("/", 1)[-1]
            tag = last.split(":", 1)[1] if ":" in last else ""
            assert "@sha256:" in ref or (tag and tag != "latest" and re.search(r"\d", tag)), f"unpinned {ref}"
        if stage.name:
            seen.add(stage.name)


def test_final_stage_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    users = [args for kw, args in dockerfile.final.instructions if kw == "USER"]
    assert users, f"{dockerfile.path}: no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and (not user.isdigit() or int(user) >= 1000), user
    # Nothing after the last USER runs as root again.
    kws = [kw for kw, _ in dockerfile.final.instructions]
    assert "RUN" not in kws[len(kws) - kws[::-1].index("USER") :]


def test_no_remote_add_and_no_secret_looking_env(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for kw, args in stage.instructions:
            if kw == "ADD":
                assert not re.search(r"https?://|git@", args), f"remote ADD: {args}"
            if kw in ("ENV", "ARG"):
                names = re.findall(r"(\w+)=", args) or [args.split()[0]]
                for name in names:
                    assert not SECRET_NAME.search(name), f"{dockerfile.path}: {kw} {name} looks like a secret"
    for name in dockerfile.global_args:
        assert not SECRET_NAME.search(name), name


def test_dependencies_are_installed_before_the_source_is_copied(dockerfile: Dockerfile) -> None:
    stages = [
        s
        for s in dockerfile.stages
        if any("requirements.lock" in a for k, a in s.instructions if k == "COPY")
    ]
    assert stages, f"{dockerfile.path}: requirements.lock never copied"
    for stage in stages:
        ins = stage.instructions
        copy_lock = next(i for i, (k, a) in enumerate(ins) if k == "COPY" and "requirements.lock" in a)
        install = next(i for i, (k, a) in enumerate(ins) if k == "RUN" and "pip install" in a and "-r " in a)
        assert copy_lock < install
        source_copies = [
            i for i, (k, a) in enumerate(ins) if k == "COPY" and any(d in a.split() for d in SOURCE_DIRS)
        ]
        if source_copies:  # the project itself: after its locked deps, without re-resolving them
            project = next(i for i, (k, a) in enumerate(ins) if k == "RUN" and "pip install --no-deps ." in a)
            assert install < min(source_copies) < project


def test_copy_sources_exist_and_survive_dockerignore(dockerfile: Dockerfile) -> None:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def ignored(path: str) -> bool:
        # Docker semantics, simplified: a pattern matches the path or one of its parent dirs from the
        # context root; a leading `**/` matches at any depth; later `!` patterns re-include.
        verdict = False
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!")
            if pat.startswith("**/"):
                hit = any(fnmatch.fnmatch(p.rsplit("/", 1)[-1], pat[3:]) for p in prefixes)
            else:
                hit = any(fnmatch.fnmatch(p, pat) for p in prefixes)
            if hit:
                verdict = not negate
        return verdict

    for stage in dockerfile.stages:
        for kw, args in stage.instructions:
            if kw != "COPY" or "--from=" in args:
                continue
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for src in sources:
                assert (ROOT / src).exists(), f"{dockerfile.path}: COPY {src} does not exist"
                assert not ignored(src), f"{dockerfile.path}: COPY {src} is excluded by .dockerignore"
    for must in (
        ".venv",
        ".git",
        ".prodtune",
        "serving/x/model.gguf",
        "local_outputs",
        "serving/x/__pycache__/a.pyc",
    ):
        assert ignored(must), f".dockerignore lets {must} into the build context"
    assert not ignored("serving/retrieval/data/x.json")  # root-anchored patterns stay at the root


def test_train_gpu_image_has_cuda_and_pinned_fine_tune_stack_without_llama_cpp() -> None:
    df = parse(IMAGES / "train-gpu" / "Dockerfile")
    assert df.resolve(df.global_args["CUDA_IMAGE"]).startswith("nvidia/cuda:")
    assert "-runtime-" in df.global_args["CUDA_IMAGE"]
    assert df.final.base == "cuda-python"
    assert next(s for s in df.stages if s.name == "cuda-python").base == "${CUDA_IMAGE}"
    gpu = {
        re.sub(r"[-_.]+", "-", n).lower(): v
        for n, _, v in (
            line.partition("==")
            for line in (IMAGES / "train-gpu" / "requirements-gpu.txt").read_text().splitlines()
            if line and not line.startswith("#")
        )
    }
    assert set(gpu) >= {"unsloth", "bitsandbytes", "trl"} and all(gpu.values())
    assert gpu["trl"] == lock_pins()["trl"]  # same TRL as the CPU path
    install = " ".join(a for s in df.stages for k, a in s.instructions if k == "RUN" and "pip install" in a)
    assert "requirements-gpu.txt" in install and "cu1" in df.text  # CUDA torch index
    # llama-cpp-python and the CPU torch pin are filtered out of the lock before installing it.
    assert re.search(r"grep -viE '\^\(torch\|llama\[-_\]cpp\[-_\]python\)==' requirements.lock", install)
    assert "--no-deps ." in df.text


def test_serve_image_carries_llama_cpp_python_from_a_cached_wheel() -> None:
    df = parse(IMAGES / "serve" / "Dockerfile")
    assert "llama-cpp-python" in lock_pins()
    build = next(s for s in df.stages if s.name == "build")
    runs = [a for k, a in build.instructions if k == "RUN"]
    assert any("--mount=type=bind,from=wheels" in r and "--find-links /wheels" in r for r in runs)
    assert any("import llama_cpp" in r for r in runs)
    assert any(n == "wheels" for n in (s.name for s in df.stages))  # empty default when no context is given
    assert ("EXPOSE", "8000 8501") in df.final.instructions


def test_base_image_bakes_the_pinned_gguf_converter() -> None:
    df = parse(IMAGES / "base" / "Dockerfile")
    build = next(s for s in df.stages if s.name == "build")
    version = next(
        a.split("=", 1)[1] for k, a in build.instructions if k == "ARG" and a.startswith("LLAMA_CPP_VERSION=")
    )
    assert version == lock_pins()["llama-cpp-python"]
    assert "ensure_converter" in df.text


def test_mlflow_image_pins_match_the_lock() -> None:
    pins = lock_pins()
    for line in (IMAGES / "mlflow" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"unpinned {line}"
            key = re.sub(r"[-_.]+", "-", name).lower()
            if key in pins:
                assert pins[key] == version, f"{name}: image {version}, lock {pins[key]}"
