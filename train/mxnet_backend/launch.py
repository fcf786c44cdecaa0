"""Start a distributed MXNet job: one scheduler, S servers and W workers.

Every process gets the ``DMLC_*`` variables MXNet's parameter server reads; the servers
and the scheduler are plain ``import mxnet`` processes (MXNet runs the server loop at
import when ``DMLC_ROLE`` says so), the workers run the given command, e.g.::

    python -m train.mxnet_backend.launch -n 2 -s 1 -- python train/train.py --kv-store dist_sync ...

Local mode (no ``--hostfile``) starts everything on this machine, bound to 127.0.0.1.
With ``--hostfile`` (one ``host[:ssh_port]`` per line, the format of dmlc_tracker's ssh
mode) the scheduler runs here and servers and workers are started round-robin on the
hosts over ssh, in the same working directory (which must exist on every host, with the
same virtualenv and data paths, e.g. a shared filesystem). dmlc_tracker itself is not
used: on Python 3.9+ its launcher calls ``Thread.isAlive()``, which no longer exists, and
its ``submit`` does not dispatch the ssh mode.

Each worker trains on its own shard of the ``.rec`` (``part_index`` = its rank).
"""
import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

from dmlc_tracker.tracker import get_host_ip

from data import cli

LOOPBACK = "127.0.0.1"
SERVER_COMMAND = [sys.executable, "-c", "import mxnet"]


def free_port(host=LOOPBACK):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def dmlc_env(role, root_uri, root_port, num_servers, num_workers, node_host=None):
    """The ``DMLC_*`` variables of one process of the job."""
    env = {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": root_uri, "DMLC_PS_ROOT_PORT": str(root_port),
           "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers)}
    if node_host:
        env["DMLC_NODE_HOST"] = node_host
    return env


def read_hostfile(path):
    """[(host, ssh_port)] from lines ``host[:port]`` (``slots=`` suffixes ignored)."""
    hosts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("slots=")[0].strip()
            if line and not line.startswith("#"):
                host, _, port = line.partition(":")
                hosts.append((host, port or "22"))
    if not hosts:
        raise ValueError("host file %s lists no host" % path)
    return hosts


def ssh_command(host, port, env, command, workdir):
    remote = " ".join("export %s=%s;" % (k, shlex.quote(v)) for k, v in sorted(env.items()))
    remote += " cd %s; %s" % (shlex.quote(workdir), " ".join(shlex.quote(c) for c in command))
    return ["ssh", "-o", "StrictHostKeyChecking=no", "-p", port, host, remote]


def plan(command, num_workers, num_servers, hosts=None, host_ip=None, port=None, workdir=None):
    """[(role, argv, extra env)] of every process of the job, the scheduler first."""
    if hosts is None:
        root, node_host = LOOPBACK, LOOPBACK
    else:
        root, node_host = host_ip or get_host_ip("auto"), None
    port = port or free_port(LOOPBACK if hosts is None else "")
    processes = [("scheduler", SERVER_COMMAND, dmlc_env("scheduler", root, port, num_servers, num_workers, root))]
    roles = ["server"] * num_servers + ["worker"] * num_workers
    for i, role in enumerate(roles):
        argv = SERVER_COMMAND if role == "server" else command
        if hosts is None:
            processes.append((role, argv, dmlc_env(role, root, port, num_servers, num_workers, node_host)))
        else:
            host, ssh_port = hosts[i % len(hosts)]
            env = dmlc_env(role, root, port, num_servers, num_workers, host)
            processes.append((role, ssh_command(host, ssh_port, env, argv, workdir or os.getcwd()), {}))
    return processes


def _stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def launch(command, num_workers, num_servers=1, hosts=None, host_ip=None, port=None):
    """Run the job; returns 0 when every worker succeeded, else the first failure's exit code.

    A failed worker, or a scheduler or server that fails while workers still run (e.g. it
    could not bind its port), stops every process of the job.
    """
    procs = []
    try:
        for role, argv, extra in plan(command, num_workers, num_servers, hosts, host_ip, port):
            procs.append((role, subprocess.Popen(argv, env=dict(os.environ, **extra))))
        workers = [proc for role, proc in procs if role == "worker"]
        others = [(role, proc) for role, proc in procs if role != "worker"]
        while not all(proc.poll() == 0 for proc in workers):
            failed = [proc.returncode for proc in workers if proc.poll() not in (None, 0)]
            if failed:
                return failed[0]
            crashed = [(role, proc.returncode) for role, proc in others if proc.poll() not in (None, 0)]
            if crashed:   # (a clean exit is the end of the job, seen before the workers' own)
                print("launch: the %s exited with code %d while workers were running" % crashed[0], file=sys.stderr)
                return crashed[0][1]
            time.sleep(0.2)
        for _, proc in others:  # the scheduler and servers end once every worker has finalised
            proc.wait(timeout=60)
        return 0
    finally:
        _stop([proc for _, proc in procs])


@cli.command("launch")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="launch", description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s [-n WORKERS] [-s SERVERS] [--hostfile F] -- COMMAND ...")
    parser.add_argument("-n", "--num-workers", type=cli.positive_int, required=True)
    parser.add_argument("-s", "--num-servers", type=cli.positive_int, default=1)
    parser.add_argument("--hostfile", default=None, help="hosts for servers and workers (ssh); default: this machine")
    parser.add_argument("--host-ip", default=None, help="address of this machine the others reach the scheduler at")
    parser.add_argument("--port", type=int, default=None, help="scheduler port (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="worker command, after --")
    cli.add_common_options(parser)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the worker command after --")
    hosts = read_hostfile(args.hostfile) if args.hostfile else None
    # Stopped with SIGTERM (e.g. by a job scheduler), stop the job's processes too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return launch(command, args.num_workers, args.num_servers, hosts, args.host_ip, args.port)


if __name__ == "__main__":
    sys.exit(main())
