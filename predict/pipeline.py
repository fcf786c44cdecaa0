"""The prediction pipeline: reader -> N decoders -> model workers per backend and device -> collector.

Processes (forked; each creates its own ZeroMQ context, the model workers their MXNet or
PyTorch networks, after the fork) joined by PUSH/PULL sockets::

    reader ──► decoder 0..N-1 ──► model worker per (backend, device) ──► collector (this process)
       (JPEG bytes)      (RGB views, MD5s)          (per-image probabilities)

- The reader streams products in input order and numbers them (the output row).
- Decoders decode JPEGs, build the test-time views, take MD5s and dictionary counts.
  With ``decode_on="device"`` they take the MD5s and counts and check each picture's
  structure but do not decode: the JPEG bytes travel on, and the model worker (of a
  backend that decodes on its device) decodes a whole batch on its device and builds the
  views there (predict.torch_runner.TorchRunner.predict_jpegs).
- The models are grouped by the backend that runs them (predict.runner.model_groups:
  MXNet and PyTorch never share a process); each group has a model worker per device,
  and every decoded product goes to one worker of every group (a model worker on the CPU
  shares the cores with the others and the decoders: predict.runner.Runner.share_cores).
  A model worker batches
  whole products (never splitting one) and runs its group's models; its last, incomplete
  batch runs when the collector, which knows from the reader that the input has ended,
  sends "flush" (a PUB socket) because results stopped coming.
- The collector (`predict.aggregate`) writes each model's per-product rows, a product
  being complete once every group's result has come.

Sockets bind to ``ipc://`` paths in a private temporary folder or to
``tcp://127.0.0.1`` on ports the OS picks (binding children report their address before
their peers start). Messages are raw frames (`predict.messages`), never pickles. Every
socket has a high-water mark of `queue_size` messages, so a slow stage blocks the ones
before it instead of filling memory.

Supervision: every child reports ``ready``/``progress``/``error``/``end`` on a control
socket. Children run until the collector has every product and stops them, so a child
that exits is a failure: the run stops at once with an error naming it (``decoder 1
(pid 1234) died with exit code -9 (SIGKILL)``) or, for a Python exception, with its
message (bad JPEG: file, offset, product, image) and, as the error's cause, the child's
traceback (shown with the tools' ``--debug``). When no product completes for
`stall_timeout` seconds the run stops and names the processes that stopped reporting
(a stopped process is named as such). Children die with their parent, even one killed by
SIGKILL (``data.parallel.die_with_parent``), and exit when they find it gone.
Every input product gets exactly one result, checked at the end.

`run_in_process` does the same work in one process (no ZeroMQ): the reference for tests
and the baseline of the benchmark.
"""
import multiprocessing
import os
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace

import psutil
import zmq
from tqdm import tqdm

from data.cli import UserError
from data.devices import parse_device
from data.images import decoded_size
from data.parallel import die_with_parent
from predict import messages
from predict.decode import DECODE_ON, Views, check_products, decode_product
from predict.runner import Batcher, check_decode_on_device, model_groups, open_runner

TRANSPORTS = ("ipc", "tcp")
POLL_MS = 100                 # collector loop period: liveness and stall checks
DRAIN_MAX = 256               # results handled between two liveness checks
CHILD_POLL_MS = 1000          # children re-check that their parent is alive this often
PROGRESS_EVERY = 1.0          # seconds between progress reports of a child
CHECK_MAX = 64                # decoding on the device: products a decoder checks at once, of those waiting


class PipelineError(UserError, RuntimeError):
    """The pipeline failed: a process crashed, hung or reported an error (its message names
    the process, and the file, place and product of an input error)."""


class ChildTraceback(Exception):
    """The traceback of a child's exception, as the cause of the parent's `PipelineError`."""

    def __str__(self):
        return "\n" + self.args[0].rstrip()


@dataclass
class PipelineConfig:
    decoders: int = 2
    batch_size: int = 64
    views: Views = field(default_factory=Views)
    devices: tuple = ("cpu",)
    transport: str = "ipc"
    queue_size: int = 32          # ZeroMQ high-water mark, in messages, of every socket
    flush_ms: int = 50            # after the input's end: idle time before incomplete batches run
    stall_timeout: float = 300.0  # seconds without a completed product (or, at start, a ready model worker)
    skip_bad_images: bool = False
    progress: bool = True
    decode_on: str = "decoders"   # where pictures are decoded: predict.decode.DECODE_ON

    def __post_init__(self):
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {self.transport!r}")
        if self.decode_on not in DECODE_ON:
            raise ValueError(f"decode_on must be one of {DECODE_ON}, not {self.decode_on!r}")
        if self.decoders < 0:
            raise ValueError("the number of decoders cannot be negative")
        for device in self.devices:
            parse_device(device)

    def for_models(self, handles):
        """This configuration with its views at the decoded size of the models `handles`
        (``data.images.decoded_size`` of their inputs): the one place it is chosen."""
        return replace(self, views=self.views.at_size(decoded_size([h.preprocessing.image_shape for h in handles])))


def prepare(products, config, md5_counts=None):
    """A decoder's work on `predict.sources.Product`s: their decoded views
    (predict.decode.decode_product) or, decoding on the device, their checked JPEG bytes
    (predict.decode.check_products: the pictures of all of them checked at once)."""
    if config.decode_on == "device":
        return check_products(products, config.skip_bad_images, md5_counts)
    return [decode_product(p, config.views, config.skip_bad_images, md5_counts) for p in products]


def predict_batch(runner, batch, config):
    """``[(decoded, probs)]`` of a model worker's `batch` (predict.runner.Runner)."""
    if config.decode_on == "device":
        return runner.predict_jpegs(batch, config.views, config.skip_bad_images)
    return runner.predict_products(batch, config.views.count)


def check_decode_on(config, handles):
    """Decoding on the device needs model workers that can (predict.runner.check_decode_on_device):
    a one-line `ValueError` otherwise, raised before any process starts."""
    if config.decode_on == "device":
        check_decode_on_device(handles)


# ----------------------------------------------------------------------------------------
# Sockets
# ----------------------------------------------------------------------------------------
def bind(sock, transport, ipc_dir, name):
    """Bind `sock` to a fresh address; return it."""
    if transport == "ipc":
        address = f"ipc://{os.path.join(ipc_dir, name)}"
        sock.bind(address)
        return address
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return f"tcp://127.0.0.1:{port}"


def _socket(zctx, kind, hwm):
    sock = zctx.socket(kind)
    sock.sndhwm = sock.rcvhwm = hwm
    sock.linger = 0
    return sock


# ----------------------------------------------------------------------------------------
# Children
# ----------------------------------------------------------------------------------------
class ParentGone(Exception):
    """The parent process disappeared: the child has nobody to work for."""


class Reporter:
    """A child's side of the control socket."""

    def __init__(self, sock, role, index):
        self.sock, self.role, self.index = sock, role, index
        self.parent = os.getppid()
        self._last_progress = 0.0

    def send(self, kind, **fields):
        self.sock.send(messages.control_frame(kind=kind, role=self.role, index=self.index, pid=os.getpid(),
                                              **fields))

    def progress(self, force=False, **counters):
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self.send("progress", **counters)

    def check_parent(self):
        if os.getppid() != self.parent:
            raise ParentGone()

    def wait(self, sock, event):
        """Block until `sock` can send/receive, checking the parent now and then."""
        while not sock.poll(CHILD_POLL_MS, event):
            self.check_parent()

    def idle_until_stopped(self):
        """Keep the sockets (and queued messages) alive until the parent stops us."""
        while True:
            time.sleep(CHILD_POLL_MS / 1000)
            self.check_parent()


def _child(role, index, control_address, target, args, parent):
    """Entry point of every child: own ZeroMQ context, errors reported to the parent. It dies
    with the parent (pid `parent`: SIGKILL, ``data.parallel.die_with_parent``) whatever it is
    doing: a model worker with products queued would otherwise look at its parent only once
    its queue is empty, 5-35 s later under load."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle
    if not die_with_parent(parent):
        os._exit(0)
    zctx = zmq.Context()
    control = zctx.socket(zmq.PUSH)
    control.linger = 2000                            # let a last error message get out
    control.connect(control_address)
    reporter = Reporter(control, role, index)
    try:
        target(zctx, reporter, *args)
    except ParentGone:
        pass
    except BaseException as e:   # noqa: B902 - reported to the parent, which stops the run
        reporter.send("error", message=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        control.close()
        zctx.term()
        os._exit(1)
    os._exit(0)


def _reader(zctx, report, source, config, ipc_dir):
    out = _socket(zctx, zmq.PUSH, config.queue_size)
    report.send("ready", address=bind(out, config.transport, ipc_dir, "products"),
                total_products=source.total_products, total_images=source.total_images)
    n_products = n_images = 0
    for product in source:
        report.wait(out, zmq.POLLOUT)
        out.send_multipart(messages.product_frames(product), copy=False)
        n_products += 1
        n_images += len(product.jpegs)
        report.progress(sent=n_products)
    report.progress(force=True, sent=n_products)
    report.send("end", products=n_products, images=n_images)
    report.idle_until_stopped()


def _decoder(zctx, report, reader_address, group_addresses, config, md5_counts):
    """Decode what the reader sends; each decoded product goes to one model worker of every
    group (`group_addresses`: the addresses of each group's model workers)."""
    inp = _socket(zctx, zmq.PULL, config.queue_size)
    inp.connect(reader_address)
    outs = []
    for addresses in group_addresses:
        outs.append(_socket(zctx, zmq.PUSH, config.queue_size))
        for address in addresses:
            outs[-1].connect(address)
    received = sent = 0
    at_once = CHECK_MAX if config.decode_on == "device" else 1
    while True:
        report.wait(inp, zmq.POLLIN)
        products = [messages.product_from_frames(inp.recv_multipart())]
        while len(products) < at_once and inp.poll(0, zmq.POLLIN):      # those waiting, without waiting
            products.append(messages.product_from_frames(inp.recv_multipart()))
        received += len(products)
        for decoded in prepare(products, config, md5_counts):
            frames = messages.decoded_frames(decoded)
            for out in outs:
                report.wait(out, zmq.POLLOUT)
                out.send_multipart(frames, copy=False)
            sent += 1
        report.progress(received=received, sent=sent)


def _model_worker(zctx, report, handles, group, device, config, ipc_dir, collector_address, commands_address,
                  processes):
    runner = open_runner(handles, device, processes)
    inp = _socket(zctx, zmq.PULL, config.queue_size)
    address = bind(inp, config.transport, ipc_dir, f"decoded-{report.index}")
    out = _socket(zctx, zmq.PUSH, config.queue_size)
    out.connect(collector_address)
    commands = _socket(zctx, zmq.SUB, 10)
    commands.setsockopt(zmq.SUBSCRIBE, b"")
    commands.connect(commands_address)
    report.send("ready", address=address)
    batcher = Batcher(config.batch_size, config.views.count)
    received = sent = 0

    def run(batch):
        nonlocal sent
        for decoded, probs in predict_batch(runner, batch, config):
            report.wait(out, zmq.POLLOUT)
            out.send_multipart(messages.result_frames(decoded, probs, group), copy=False)
            sent += 1
        report.progress(received=received, sent=sent)

    poller = zmq.Poller()
    poller.register(inp, zmq.POLLIN)
    poller.register(commands, zmq.POLLIN)
    while True:
        events = dict(poller.poll(CHILD_POLL_MS))
        if inp in events:
            frames = inp.recv_multipart(copy=False)
            received += 1
            for batch in batcher.add(messages.decoded_from_frames([f.buffer for f in frames])):
                run(batch)
        if commands in events:
            commands.recv()                  # "flush": the input has ended, run what is left
            if len(batcher):
                run(batcher.take())
        if not events:
            report.check_parent()


# ----------------------------------------------------------------------------------------
# Supervision (in the parent)
# ----------------------------------------------------------------------------------------
def _describe_exit(code):
    if code < 0:
        try:
            return f"died with exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"died with exit code {code}"
    return f"exited with code {code}"


class Supervisor:
    """Starts the children and turns their deaths, errors and silences into `PipelineError`."""

    def __init__(self, control, control_address, stall_timeout):
        self.mp = multiprocessing.get_context("fork")
        self.control, self.control_address = control, control_address
        self.stall_timeout = stall_timeout
        self.children = {}          # (role, index) -> Process
        self.last_seen = {}         # (role, index) -> monotonic time of the last report
        self.counters = {}          # (role, index) -> last progress counters
        self.ready, self.end = {}, None

    def start(self, role, index, target, *args):
        proc = self.mp.Process(target=_child, args=(role, index, self.control_address, target, args, os.getpid()),
                               name=f"{role} {index}", daemon=True)
        proc.start()
        self.children[(role, index)] = proc
        self.last_seen[(role, index)] = time.monotonic()
        return proc

    def name(self, key):
        proc = self.children.get(key)
        role, index = key
        return f"{role} {index} (pid {proc.pid if proc else '?'})"

    def handle(self, msg):
        key = (msg["role"], msg["index"])
        self.last_seen[key] = time.monotonic()
        kind = msg["kind"]
        if kind == "error":
            raise PipelineError(f"{self.name(key)} failed: {msg['message']}") from ChildTraceback(msg["traceback"])
        if kind == "ready":
            self.ready[key] = msg
        elif kind == "progress":
            self.counters[key] = {k: v for k, v in msg.items() if k not in ("kind", "role", "index", "pid")}
        elif kind == "end":
            self.end = msg

    def drain(self, timeout_ms=0):
        """Handle the control messages waiting (or arriving within `timeout_ms`)."""
        while self.control.poll(timeout_ms, zmq.POLLIN):
            self.handle(messages.control_from_frame(self.control.recv()))
            timeout_ms = 0

    def check_alive(self):
        for key, proc in self.children.items():
            if proc.exitcode is not None:
                self.drain(500)                  # its last words, when it had time to send them
                raise PipelineError(f"{self.name(key)} {_describe_exit(proc.exitcode)}")

    def stall_report(self, idle):
        """The error for a stalled run: every child's last report and state, stopped ones first."""
        now, lines, stopped = time.monotonic(), [], []
        for key, proc in self.children.items():
            try:
                status = psutil.Process(proc.pid).status()
            except psutil.Error:
                status = "gone"
            if status == psutil.STATUS_STOPPED:
                stopped.append(self.name(key))
            counters = ", ".join(f"{k} {v}" for k, v in self.counters.get(key, {}).items())
            lines.append(f"{self.name(key)}: state {status}, last report {now - self.last_seen[key]:.1f} s ago"
                         + (f" ({counters})" if counters else ""))
        head = f"{', '.join(stopped)} is stopped: " if stopped else ""
        return PipelineError(f"{head}pipeline stalled: no product completed for {idle:.1f} s "
                             f"(stall timeout {self.stall_timeout:g} s)\n  " + "\n  ".join(lines))

    def wait_ready(self, keys):
        """Wait for the `ready` message of each child in `keys` (models load meanwhile)."""
        start = time.monotonic()
        while not all(k in self.ready for k in keys):
            self.drain(POLL_MS)
            self.check_alive()
            if time.monotonic() - start > self.stall_timeout:
                raise self.stall_report(time.monotonic() - start)
        return [self.ready[k] for k in keys]

    def stop_all(self):
        for proc in self.children.values():
            if proc.exitcode is None:
                proc.terminate()
                try:
                    os.kill(proc.pid, signal.SIGCONT)    # a stopped process only acts on SIGTERM once continued
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for proc in self.children.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()


# ----------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------
def _progress_bar(config, total):
    return tqdm(total=total, unit="product", desc="predict", disable=not config.progress, smoothing=0.05)


def run_pipeline(source, handles, aggregator, config, md5_counts=None):
    """Predict every product of `source` with every model of `handles` over ZeroMQ, with the
    views of `config` (at the models' decoded size: `PipelineConfig.for_models`), into the
    collector's `aggregator` (predict.aggregate.Aggregator of `handles`' models, grouped by
    predict.runner.model_groups); returns its manifests. On failure the aggregator's
    folders are discarded."""
    if config.decoders < 1:
        aggregator.discard()
        raise ValueError("the ZeroMQ pipeline needs at least one decoder (run_in_process needs none)")
    groups = model_groups(handles)
    with tempfile.TemporaryDirectory(prefix="predict-zmq-") as ipc_dir:
        zctx = zmq.Context()
        results = _socket(zctx, zmq.PULL, config.queue_size)
        control = _socket(zctx, zmq.PULL, 1000)
        commands = _socket(zctx, zmq.PUB, 10)
        sup = Supervisor(control, bind(control, config.transport, ipc_dir, "control"), config.stall_timeout)
        try:
            results_address = bind(results, config.transport, ipc_dir, "results")
            commands_address = bind(commands, config.transport, ipc_dir, "commands")
            workers = [(group, device) for group in range(len(groups)) for device in config.devices]
            keys = [("model worker", i) for i in range(len(workers))]
            on_cpu = sum(parse_device(device).kind == "cpu" for _, device in workers) + config.decoders
            for (role, i), (group, device) in zip(keys, workers):
                group_handles = [handles[number] for number in groups[group][1]]
                sup.start(role, i, _model_worker, group_handles, group, device, config, ipc_dir, results_address,
                          commands_address, on_cpu)
            sup.start("reader", 0, _reader, source, config, ipc_dir)
            *worker_ready, reader_ready = sup.wait_ready(keys + [("reader", 0)])
            aggregator.start_clock()
            group_addresses = [[ready["address"] for ready, (g, _) in zip(worker_ready, workers) if g == group]
                               for group in range(len(groups))]
            for i in range(config.decoders):
                sup.start("decoder", i, _decoder, reader_ready["address"], group_addresses, config, md5_counts)
            manifests = _collect(sup, results, commands, aggregator, config, reader_ready["total_products"])
            aggregator = None
            return manifests
        finally:
            sup.stop_all()
            if aggregator is not None:
                aggregator.discard()
            for sock in (results, control, commands):
                sock.close()
            zctx.term()


def _collect(sup, results, commands, aggregator, config, total_hint):
    """Receive every product's result from every group of models; once the reader has ended,
    tell the model workers to run their last, incomplete batches whenever results stop
    coming for `flush_ms`."""
    poller = zmq.Poller()
    poller.register(results, zmq.POLLIN)
    poller.register(sup.control, zmq.POLLIN)
    received = 0
    last_result = last_flush = time.monotonic()
    with _progress_bar(config, total_hint) as bar:
        while sup.end is None or received < sup.end["products"] * len(aggregator.groups):
            events = dict(poller.poll(config.flush_ms if sup.end else POLL_MS))
            now = time.monotonic()
            if results in events:
                for _ in range(DRAIN_MAX):
                    if not results.poll(0, zmq.POLLIN):
                        break
                    frames = results.recv_multipart(copy=False)
                    if aggregator.add(*messages.result_from_frames([f.buffer for f in frames])):
                        bar.update()             # the product's last group
                    received += 1
                last_result = now
            if sup.control in events:
                sup.drain()
            if sup.end and min(now - last_result, now - last_flush) * 1000 >= config.flush_ms:
                commands.send(b"flush")
                last_flush = now
            sup.check_alive()
            if now - last_result > config.stall_timeout:
                raise sup.stall_report(now - last_result)
    return aggregator.finish(sup.end["products"])


def run_in_process(source, handles, aggregator, config, md5_counts=None):
    """The same work as `run_pipeline` in one process, without ZeroMQ, for models of one
    backend (a process runs one framework)."""
    try:
        if len(model_groups(handles)) > 1:
            raise ValueError("these models run on %s, which cannot share a process: predict them with --decoders 1 "
                             "or more (a model worker per backend)"
                             % " and ".join(backend.framework for backend, _ in model_groups(handles)))
        runner = open_runner(handles, config.devices[0])
        aggregator.start_clock()
        batcher, n = Batcher(config.batch_size, config.views.count), 0
        with _progress_bar(config, source.total_products) as bar:
            for product in source:
                for batch in batcher.add(*prepare([product], config, md5_counts)):
                    for result in predict_batch(runner, batch, config):
                        aggregator.add(*result)
                        bar.update()
                n += 1
            for result in predict_batch(runner, batcher.take(), config):
                aggregator.add(*result)
                bar.update()
        manifests = aggregator.finish(n)
    except BaseException:
        aggregator.discard()
        raise
    return manifests
