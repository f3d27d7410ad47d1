"""A small SLURM cluster on loopback for tests: munged, slurmctld and one slurmd per node, every node
on this host (Debian's packages, installed by .ci/system-deps.sh), with their own key, config, ports,
sockets and state in one temp dir, started and stopped here by PID. Nothing under /etc or /run is used."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.topology import Managed, free_port, launch, wait_until

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
NODE = "studynode"  # node names: studynode1, studynode2, ... all on this host, each with its own slurmd
MISSING_HINT = "apt-get install slurmctld slurmd slurm-client munge (.ci/system-deps.sh)"


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name) is None
            and not os.access(f"/usr/sbin/{name}", os.X_OK)]


def _program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def not_tested(what: str, reason: str) -> None:
    """Skip loudly; fail instead under STUDY_REQUIRE_TOPOLOGY=1 (CI), so SLURM cannot hide in a skip."""
    import pytest

    if os.environ.get("STUDY_REQUIRE_TOPOLOGY") == "1":
        pytest.fail(f"STUDY_REQUIRE_TOPOLOGY=1 but {what} cannot run: {reason}")
    pytest.skip(f"SLURM NOT TESTED ({what}): {reason}")


def require_slurm(what: str) -> None:
    missing = missing_programs()
    if missing:
        not_tested(what, f"missing {', '.join(missing)}: {MISSING_HINT}")


SLURM_CONF = """\
ClusterName=studytest
SlurmctldHost={hostname}(127.0.0.1)
MailProg=/bin/true
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={ctld_port}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool-%n
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd-%n.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd-%n.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
LaunchParameters=use_interactive_step
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
PlugStackConfig={base}/plugstack.conf
KillWait=60
SlurmctldTimeout=30
SlurmdTimeout=60
{nodes}
PartitionName=debug Nodes={node_names} Default=YES MaxTime=INFINITE State=UP
"""
# Several slurmd on one host: each node its own port (Debian's build supports it).
NODE_LINE = "NodeName={name} NodeAddr=127.0.0.1 NodeHostname={hostname} Port={port} CPUs={cpus} State=UNKNOWN"


@dataclass
class SlurmCluster:
    base: Path
    processes: list[Managed] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.base / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([_program(argv[0]), *argv[1:]], env=self.env(), capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def job_state(self, job_id: str) -> str:
        """PENDING, RUNNING, ...; '' once the job has left the queue."""
        return self.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout.strip()

    def wait_gone(self, job_id: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.job_state(job_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {self.job_state(job_id)} after {timeout_s} s\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in
                         sorted(self.base.glob("slurm*.log")))

    def stop(self) -> None:
        for managed in reversed(self.processes):
            managed.stop(grace_s=10)
        shutil.rmtree(self.base, ignore_errors=True)


def start_slurm(nodes: int = 2, cpus: int = 1) -> SlurmCluster:
    """munged, slurmctld and one slurmd per node (`cpus` CPUs each), all on loopback; stops what it
    started if a step fails."""
    # Short paths: the munge socket path has a length limit. The base is traversable by every account,
    # since jobs may run as another user than the test.
    base = Path(tempfile.mkdtemp(prefix="study-slurm-"))
    os.chmod(base, 0o755)
    cluster = SlurmCluster(base)
    try:
        names = [f"{NODE}{index}" for index in range(1, nodes + 1)]
        for sub in ("state", "munge", *(f"spool-{name}" for name in names)):
            (base / sub).mkdir()
        os.chmod(base / "munge", 0o755)
        key = base / "munge" / "munge.key"
        subprocess.run([_program("mungekey"), "-c", "-k", str(key)], check=True, capture_output=True)
        munge_socket = base / "munge" / "munge.socket"
        munged = launch("munged", [_program("munged"), "-F", "--force", f"--socket={munge_socket}",
                                   f"--key-file={key}", f"--pid-file={base / 'munge' / 'munged.pid'}",
                                   f"--seed-file={base / 'munge' / 'munged.seed'}",
                                   f"--log-file={base / 'munge' / 'munged.log'}"], base)
        cluster.processes.append(munged)
        wait_until(lambda: munge_socket.exists(), 20, "munged", munged)
        (base / "plugstack.conf").write_text("")
        hostname = os.uname().nodename
        node_lines = "\n".join(NODE_LINE.format(name=name, hostname=hostname, port=free_port(), cpus=cpus) for name in names)
        cluster.conf.write_text(SLURM_CONF.format(
            user=getpass.getuser(), ctld_port=free_port(), munge_socket=munge_socket, base=base, hostname=hostname,
            nodes=node_lines, node_names=",".join(names)))
        env = {"SLURM_CONF": str(cluster.conf)}
        ctld = launch("slurmctld", [_program("slurmctld"), "-D", "-i", "-f", str(cluster.conf)], base, env=env)
        cluster.processes.append(ctld)
        wait_until(lambda: cluster.run("sinfo", "-h", check=False).returncode == 0, 30, "slurmctld", ctld)
        for name in names:
            slurmd = launch(f"slurmd-{name}", [_program("slurmd"), "-D", "-N", name, "-f", str(cluster.conf)], base, env=env)
            cluster.processes.append(slurmd)
        wait_until(lambda: cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split() == ["idle"] * nodes,
                   60, "slurmd (every node idle)", slurmd)
    except BaseException:
        cluster.stop()
        raise
    return cluster
