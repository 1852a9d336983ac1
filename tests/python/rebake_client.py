#!/usr/bin/env python3
"""A Rebake control API client built from the .proto files alone (no Rust).

It proves the gRPC API is usable from other languages, e.g. a dashboard:

1. generates Python stubs from `proto/rebake/control/v1/control.proto` (and whatever it
   imports) with `python3 -m grpc_tools.protoc`;
2. calls `ListImages`, following `next_page_token`, and prints one JSON line per image:
   `{"rpc": "ListImages", "image": {...}}`;
3. opens `WatchEvents` from sequence 1 and prints one JSON line per event
   (`{"rpc": "WatchEvents", "event": {...}}`) until it has seen an `image.published` event
   (of `--published-image` when given), or fails after `--timeout` seconds.

Messages are printed with `google.protobuf.json_format.MessageToDict` (proto field names;
64-bit integers are JSON strings, as the proto3 JSON mapping says). Exits non-zero with a
message on stderr on any failure. Needs only `grpcio`, `grpcio-tools` and `protobuf`.

    python3 tests/python/rebake_client.py --endpoint 127.0.0.1:50051 --out /tmp/rebake-py
"""

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import time

CONTROL_PROTO = "rebake/control/v1/control.proto"
DEFAULT_PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


class ClientError(Exception):
    """A failure worth one clear line on stderr."""


def needed_protos(root, entry):
    """`entry` and every .proto it imports (transitively) that lives under `root`.

    Imports not under `root` (e.g. `google/protobuf/*.proto`) come with grpc_tools.
    """
    needed, pending = [], [entry]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            if name == entry:
                raise ClientError(f"{path} does not exist (wrong --proto-root?)")
            continue
        needed.append(name)
        with open(path, encoding="utf-8") as file:
            pending.extend(re.findall(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', file.read(), re.M))
    return sorted(needed)


def generate(root, out):
    """Runs protoc on the control proto and its imports; returns the generated modules."""
    os.makedirs(out, exist_ok=True)
    protos = needed_protos(root, CONTROL_PROTO)
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{root}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClientError(f"protoc failed ({' '.join(command)}): {result.stderr.strip() or result.stdout.strip()}")
    print(f"generated stubs for {', '.join(protos)} in {out}", file=sys.stderr)
    sys.path.insert(0, out)
    module = CONTROL_PROTO[: -len(".proto")].replace("/", ".")
    return importlib.import_module(module + "_pb2"), importlib.import_module(module + "_pb2_grpc")


def to_dict(message):
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def emit(rpc, key, message):
    print(json.dumps({"rpc": rpc, key: to_dict(message)}, sort_keys=True), flush=True)


def list_images(stub, pb2, metadata, page_size, timeout):
    """Every image, page by page; returns how many."""
    count, token, pages = 0, "", 0
    while True:
        response = stub.ListImages(
            pb2.ListImagesRequest(page_size=page_size, page_token=token), metadata=metadata, timeout=timeout
        )
        pages += 1
        for image in response.images:
            emit("ListImages", "image", image)
            count += 1
        token = response.next_page_token
        if not token:
            break
        if pages > 10_000:
            raise ClientError("ListImages keeps returning a next_page_token")
    print(f"ListImages: {count} images in {pages} pages", file=sys.stderr)
    return count


def watch_events(stub, pb2, metadata, from_sequence, published_image, timeout):
    """Streams events until an `image.published` one (of `published_image` when set)."""
    import grpc

    call = stub.WatchEvents(pb2.WatchEventsRequest(from_sequence=from_sequence), metadata=metadata, timeout=timeout)
    seen = 0
    try:
        for event in call:
            emit("WatchEvents", "event", event)
            seen += 1
            if event.kind == "image.published" and (not published_image or event.image == published_image):
                print(
                    f"WatchEvents: image.published for {event.image} at sequence {event.sequence} "
                    f"after {seen} events",
                    file=sys.stderr,
                )
                return event
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            wanted = f" for {published_image}" if published_image else ""
            raise ClientError(f"WatchEvents: no image.published event{wanted} within {timeout}s ({seen} events seen)")
        raise
    finally:
        call.cancel()
    raise ClientError(f"WatchEvents: the stream ended after {seen} events without an image.published event")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="host:port of the control API (no scheme)")
    parser.add_argument("--out", required=True, help="directory for the generated Python code")
    parser.add_argument("--proto-root", default=DEFAULT_PROTO_ROOT, help="the repository's proto/ directory")
    parser.add_argument("--token", default=os.environ.get("REBAKE_TOKEN", ""), help="bearer token, if required")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for image.published")
    parser.add_argument("--from-sequence", type=int, default=1, help="WatchEvents replay start")
    parser.add_argument("--published-image", default="", help="wait for image.published of this image")
    parser.add_argument("--page-size", type=int, default=1, help="ListImages page size (small to exercise paging)")
    args = parser.parse_args()
    endpoint = re.sub(r"^[a-z]+://", "", args.endpoint).rstrip("/")

    try:
        pb2, pb2_grpc = generate(os.path.abspath(args.proto_root), os.path.abspath(args.out))
        import grpc

        metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
        with grpc.insecure_channel(endpoint) as channel:
            started = time.monotonic()
            try:
                grpc.channel_ready_future(channel).result(timeout=min(args.timeout, 15))
            except grpc.FutureTimeoutError:
                raise ClientError(f"cannot connect to {endpoint}")
            stub = pb2_grpc.ControlStub(channel)
            list_images(stub, pb2, metadata, args.page_size, timeout=30)
            remaining = max(1.0, args.timeout - (time.monotonic() - started))
            watch_events(stub, pb2, metadata, args.from_sequence, args.published_image, remaining)
    except ClientError as error:
        print(f"rebake_client: {error}", file=sys.stderr)
        return 1
    except ImportError as error:
        print(f"rebake_client: {error} (pip install grpcio grpcio-tools)", file=sys.stderr)
        return 2
    except Exception as error:  # grpc.RpcError and anything unexpected: one clear line, then fail.
        details = error.details() if hasattr(error, "details") else ""
        code = error.code() if hasattr(error, "code") else ""
        print(f"rebake_client: {type(error).__name__} {code} {details or error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
