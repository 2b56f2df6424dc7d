"""Start genuine NVIDIA Triton (the tritonserver binary of the ``nvidia-pytriton`` wheel, in its own virtual
environment ``.venv-triton``, built by ``setup.sh --triton``) on loopback with free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("STYLECAST_TRITON_VENV", ROOT / ".venv-triton"))
SHIM = Path(__file__).resolve().parent / "onnxruntime" / "model.py"


def venv_python() -> Path:
    return VENV / "bin" / "python"


def available() -> bool:
    return venv_python().exists()


def _query(code: str) -> str:
    return subprocess.check_output([str(venv_python()), "-c", code], text=True).strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_directory(folder: Path, with_stylecast: bool = False) -> tuple[Path, dict[str, str]]:
    """Triton's python backend from the wheel (with the stub for this Python) plus the onnxruntime shim;
    returns the binary and the environment the server and its stubs need. ``with_stylecast`` also lets
    the stubs import stylecast and torch from the running environment (after Triton's own numpy)."""
    site = Path(_query("import pytriton, os; print(os.path.dirname(os.path.dirname(pytriton.__file__)))"))
    libdir = _query("import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
    version = _query("import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
    server = site / "pytriton" / "tritonserver"
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    for f in (server / "backends" / "python").iterdir():
        if f.is_file():
            shutil.copy(f, python / f.name)
    shutil.copy(server / "python_backend_stubs" / version / "triton_python_backend_stub", python)
    (folder / "onnxruntime").mkdir(exist_ok=True)
    shutil.copy(SHIM, folder / "onnxruntime" / "model.py")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, str(site / "nvidia_pytriton.libs"),
                                              env.get("LD_LIBRARY_PATH", "")])
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", "")])
    env["PYTHONPATH"] = str(site)
    if with_stylecast:
        # The stub's Python takes its packages from the virtual environment first on PATH (PYTHONPATH is
        # not read). The python backend needs numpy<2, so a throw-away environment lists Triton's packages
        # first and then adds the running environment as a site dir (its .pth files make the editable
        # stylecast importable; torch and the rest come from there).
        import sysconfig

        stub_env = folder / "stub-env"
        if not (stub_env / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(stub_env)], check=True)
        stub_site = Path(subprocess.check_output(
            [str(stub_env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True).strip())
        (stub_site / "stylecast-test.pth").write_text(
            f"{site}\nimport site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
        env["PATH"] = os.pathsep.join([str(stub_env / "bin"), env["PATH"]])
    return server / "bin" / "tritonserver", env


class Triton:
    """``with Triton(repository, workdir) as t: Client(t.url)``; stops the process on exit."""

    def __init__(self, repository: Path, workdir: Path, explicit: bool = False, models: tuple[str, ...] = (),
                 with_stylecast: bool = False, extra_env: dict[str, str] | None = None):
        self.repository, self.workdir, self.explicit, self.models = Path(repository), Path(workdir), explicit, models
        self.with_stylecast, self.extra_env = with_stylecast, extra_env or {}
        self.port, self.http_port = _free_port(), _free_port()
        self.url, self.http_url = f"127.0.0.1:{self.port}", f"127.0.0.1:{self.http_port}"
        self.log = self.workdir / "tritonserver.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Triton:
        binary, env = backend_directory(self.workdir / "backends", self.with_stylecast)
        env.update(self.extra_env)
        cmd = [str(binary), f"--model-repository={self.repository}", f"--backend-directory={self.workdir / 'backends'}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.port}", "--allow-http=true",
               "--http-address=127.0.0.1", f"--http-port={self.http_port}",
               "--metrics-address=127.0.0.1", f"--metrics-port={_free_port()}",
               "--allow-metrics=true", "--allow-cpu-metrics=false", "--allow-gpu-metrics=false",
               "--strict-readiness=true", "--exit-on-error=false", "--log-verbose=0"]
        if self.explicit:
            cmd += ["--model-control-mode=explicit"] + [f"--load-model={m}" for m in self.models]
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.workdir, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 300.0) -> None:
        import tritonclient.grpc as tc

        end = time.monotonic() + timeout
        with tc.InferenceServerClient(self.url) as c:
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    tail = self.log.read_text()[-4000:]
                    raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{tail}")
                try:
                    if c.is_server_live() and (self.explicit or c.is_server_ready() or self._settled(c)):
                        return
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise TimeoutError(f"tritonserver not ready after {timeout} s:\n{self.log.read_text()[-4000:]}")

    @staticmethod
    def _settled(c) -> bool:
        """Every model has reached READY or UNAVAILABLE (a model that fails to load keeps strict readiness
        false for good; the tests look at each model's state themselves)."""
        models = c.get_model_repository_index(as_json=True).get("models", [])
        return bool(models) and all(m.get("state") in ("READY", "UNAVAILABLE") for m in models)

    def errors(self) -> list[str]:
        """Error lines of the server log."""
        return [line for line in self.log.read_text().splitlines() if line.startswith("E")]

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":  # python -m tests.genuine_triton.server [REPOSITORY]: serve until Ctrl-C
    import tempfile

    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "model_repository").resolve()
    with tempfile.TemporaryDirectory() as tmp, Triton(repo, Path(tmp)) as t:
        print(f"Triton serving {repo} on {t.url}", flush=True)
        t.proc.wait()
