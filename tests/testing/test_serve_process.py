"""`python -m gameball_async.testing serve`: the fake in a separate process."""

from __future__ import annotations

import json
import subprocess
import sys

import aiohttp
import anyio
import pytest
from _support import WHEN
from anyio.abc import ByteReceiveStream

from gameball_async.testing.__main__ import main


async def read_line(stream: ByteReceiveStream) -> bytes:
    buffer = b""
    while b"\n" not in buffer:
        buffer += await stream.receive()
    return buffer.split(b"\n", 1)[0]


async def read_all(stream: ByteReceiveStream) -> bytes:
    chunks = []
    try:
        while True:
            chunks.append(await stream.receive())
    except anyio.EndOfStream:
        pass
    return b"".join(chunks)


@pytest.mark.anyio
async def test_serve_prints_json_line_and_exits_cleanly() -> None:
    command = [
        sys.executable,
        "-m",
        "gameball_async.testing",
        "serve",
        "--port",
        "0",
        "--seed",
        "3",
        "--queue-delay",
        "0",
        "--processing-rate",
        "5000",
        "--fault-500",
        "0",
        "--latency",
        "0",
        "0",
    ]
    async with await anyio.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            with anyio.fail_after(30):
                info = json.loads(await read_line(process.stdout))
            assert set(info) == {"base_url", "api_key", "secret_key"}
            headers = {"APIKey": info["api_key"], "SecretKey": info["secret_key"]}
            item = {"customerId": "c", "transactionId": "t", "transactionTime": WHEN, "amount": 1}
            async with aiohttp.ClientSession() as http:
                url = info["base_url"] + "/batch/cashback"
                async with http.post(url, json={"body": [item]}, headers=headers) as resp:
                    assert resp.status == 200
                    job_id = (await resp.json())["jobId"]
                async with http.get(f"{info['base_url']}/batch/{job_id}", headers=headers) as resp:
                    assert resp.status == 200
                origin = info["base_url"].split("/api/", 1)[0]
                async with http.get(origin + "/_fake/stats") as resp:
                    stats = await resp.json()
        finally:
            if process.returncode is None:
                process.terminate()
        with anyio.fail_after(15):
            returncode = await process.wait()
            stderr = await read_all(process.stderr)
    assert returncode == 0, stderr
    assert b"Traceback" not in stderr
    assert stats["jobs_created"] == 1
    assert stats["counts"]["requests"] == 2
    assert stats["counts"]["reply:200"] == 2


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--fault-429", "2"]) == 2
    assert "probability" in capsys.readouterr().err
