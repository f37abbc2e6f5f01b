"""An independent V2 (Open Inference Protocol) server for tests: numpy models on the official definitions only.

Models: "lead-stats" takes [B, 12, T] as input "signals" and returns "features" = per-lead mean then
std, [B, 24], as raw FP32; "lead-stats-typed" answers in typed fp32_contents; "lead-stats-btl" takes
[B, T, 12]; "broken" answers every ModelInfer with INTERNAL (a model failing on the server). Run: python tests/v2_reference_server.py --port-file F (binds 127.0.0.1, any free port).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal

import grpc
import numpy as np

from protos.inference import open_inference_grpc_pb2 as pb
from protos.inference import open_inference_grpc_pb2_grpc as pb_grpc

LEADS = 12
MODELS = {"lead-stats": ("BLT", False), "lead-stats-typed": ("BLT", True), "lead-stats-btl": ("BTL", False),
          "broken": ("BLT", False)}
DTYPES = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2")}


def lead_stats(x: np.ndarray) -> np.ndarray:
    """The reference "model": per-lead mean and std of [B, L, T] -> [B, 2L]."""
    return np.concatenate([x.mean(axis=-1), x.std(axis=-1)], axis=1).astype(np.float32)


class Reference(pb_grpc.GRPCInferenceServiceServicer):
    """GRPCInferenceService over MODELS, with Triton-like error codes."""

    async def ServerLive(self, request, context):  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):  # noqa: N802
        return pb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):  # noqa: N802
        return pb.ModelReadyResponse(ready=request.name in MODELS)

    async def ServerMetadata(self, request, context):  # noqa: N802
        return pb.ServerMetadataResponse(name="v2-reference", version="1", extensions=[])

    async def ModelMetadata(self, request, context):  # noqa: N802
        if request.name not in MODELS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{request.name}'")
        shape = [-1, LEADS, -1] if MODELS[request.name][0] == "BLT" else [-1, -1, LEADS]
        meta = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(name=request.name, versions=["3"], platform="numpy",
                                        inputs=[meta(name="signals", datatype="FP32", shape=shape)],
                                        outputs=[meta(name="features", datatype="FP32", shape=[-1, 2 * LEADS])])

    async def ModelInfer(self, request, context):  # noqa: N802
        if request.model_name not in MODELS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{request.model_name}'")
        if request.model_name == "broken":
            await context.abort(grpc.StatusCode.INTERNAL, "model raised: RuntimeError: CUDA error: out of memory")
        layout, typed = MODELS[request.model_name]
        tensor = request.inputs[0]
        if tensor.name != "signals":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"unexpected inference input '{tensor.name}' for model '{request.model_name}'")
        if tensor.datatype not in DTYPES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported datatype {tensor.datatype}")
        raw = request.raw_input_contents[0]
        if len(raw) != int(np.prod(tensor.shape)) * DTYPES[tensor.datatype].itemsize:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents size does not match shape")
        x = np.frombuffer(raw, DTYPES[tensor.datatype]).reshape(tensor.shape).astype(np.float32)
        y = lead_stats(x if layout == "BLT" else x.transpose(0, 2, 1))
        out = pb.ModelInferResponse.InferOutputTensor(name="features", datatype="FP32", shape=list(y.shape))
        reply = pb.ModelInferResponse(model_name=request.model_name, model_version="3", id=request.id)
        if typed:
            out.contents.fp32_contents.extend(y.ravel().tolist())
            reply.outputs.append(out)
        else:
            reply.outputs.append(out)
            reply.raw_output_contents.append(y.tobytes())
        return reply


async def serve(port_file: str) -> None:
    """Serve until SIGTERM; publish the bound port in port_file."""
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Reference(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(port_file + ".tmp", port_file)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    asyncio.run(serve(parser.parse_args().port_file))
