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


def backend_directory(folder: Path) -> tuple[Path, dict[str, str]]:
    """Triton's python backend from the wheel (with the stub for this Python) plus the onnxruntime shim;
    returns the folder and the environment the server and its stubs need."""
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
    return server / "bin" / "tritonserver", env


class Triton:
    """``with Triton(repository, workdir) as t: Client(t.url)``; stops the process on exit."""

    def __init__(self, repository: Path, workdir: Path, explicit: bool = False, models: tuple[str, ...] = ()):
        self.repository, self.workdir, self.explicit, self.models = Path(repository), Path(workdir), explicit, models
        self.port = _free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.log = self.workdir / "tritonserver.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Triton:
        binary, env = backend_directory(self.workdir / "backends")
        cmd = [str(binary), f"--model-repository={self.repository}", f"--backend-directory={self.workdir / 'backends'}",
               "--grpc-address=127.0.0.1", f"--grpc-port={self.port}", "--allow-http=false",
               "--http-address=127.0.0.1", f"--http-port={_free_port()}",
               "--metrics-address=127.0.0.1", f"--metrics-port={_free_port()}",
               "--allow-metrics=true", "--allow-cpu-metrics=false", "--allow-gpu-metrics=false",
               "--strict-readiness=true", "--exit-on-error=false", "--log-verbose=0"]
        if self.explicit:
            cmd += ["--model-control-mode=explicit"] + [f"--load-model={m}" for m in self.models]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 120.0) -> None:
        import tritonclient.grpc as tc

        end = time.monotonic() + timeout
        with tc.InferenceServerClient(self.url) as c:
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    tail = self.log.read_text()[-4000:]
                    raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{tail}")
                try:
                    if c.is_server_live() and (self.explicit or c.is_server_ready()):
                        return
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise TimeoutError(f"tritonserver not ready after {timeout} s:\n{self.log.read_text()[-4000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":  # python -m tests.triton.server [REPOSITORY]: serve until Ctrl-C
    import tempfile

    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "model_repository").resolve()
    with tempfile.TemporaryDirectory() as tmp, Triton(repo, Path(tmp)) as t:
        print(f"Triton serving {repo} on {t.url}", flush=True)
        t.proc.wait()
