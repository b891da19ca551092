#!/usr/bin/env python3
"""Start a sandbox-like container with OpenSandbox volumes, the way the
sandbox server would, with the Docker SDK for Python (`pip install docker`).

The volumes are the Lifecycle API's own JSON (one volume, a list, or an
object with `volumes`, e.g. a whole CreateSandboxRequest). They are checked
and turned into Docker mounts by `opensandbox-volume translate --format api`,
so the API's rules live in one place; this script only builds
`docker.types.Mount` objects from what it prints and runs the container.

    python3 examples/sandbox_sdk.py --driver opensandbox --image python:3.11 \\
        --volumes volumes.json -- sh -c 'ls /mnt/work'

prints the command's output and exits with its status (2 with the problems
on stderr when the volumes break the API's rules, as the server would answer
400). The container and its anonymous volumes are removed at the end
(`docker rm -v`): the plugin forgets the volumes, the data stays where it is.
"""

import argparse
import json
import subprocess
import sys

import docker


class InvalidVolumes(ValueError):
    """The request's volumes break the Lifecycle API's rules (HTTP 400)."""


def translate(volumes_json, driver, translate_bin="opensandbox-volume", name_prefix=None):
    """The request's volumes as HostConfig.Mounts elements (dicts)."""
    command = [translate_bin, "translate", "--format", "api", "--driver", driver]
    if name_prefix is not None:
        command += ["--name-prefix", name_prefix]
    result = subprocess.run(command, input=volumes_json, capture_output=True, text=True)
    if result.returncode == 2:
        raise InvalidVolumes(result.stderr.strip())
    if result.returncode != 0:
        raise RuntimeError(f"{translate_bin} translate failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def sdk_mount(mount):
    """One HostConfig.Mounts element as the SDK's Mount object."""
    driver = mount["VolumeOptions"]["DriverConfig"]
    return docker.types.Mount(
        target=mount["Target"],
        # Empty: an anonymous volume, named by Docker, gone with `docker rm -v`.
        source=mount["Source"] or None,
        type="volume",
        read_only=mount["ReadOnly"],
        driver_config=docker.types.DriverConfig(driver["Name"], driver["Options"]),
    )


def run_sandbox(client, image, command, mounts):
    """Creates, starts and waits for the container; returns (status, stdout, stderr)."""
    container = client.containers.create(image, command, mounts=mounts)
    try:
        container.start()
        status = container.wait()["StatusCode"]
        stdout = container.logs(stdout=True, stderr=False).decode()
        stderr = container.logs(stdout=False, stderr=True).decode()
        return status, stdout, stderr
    finally:
        # v=True removes the anonymous volumes' Docker records; the plugin
        # never deletes a bucket or a host directory.
        container.remove(v=True, force=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", default="opensandbox", help="the plugin's driver name")
    parser.add_argument("--image", required=True, help="the sandbox image")
    parser.add_argument("--volumes", required=True, help="Lifecycle API volume JSON file, - for stdin")
    parser.add_argument("--name-prefix", help="named volumes PREFIX+NAME instead of anonymous ones")
    parser.add_argument("--translate", default="opensandbox-volume", help="the opensandbox-volume binary")
    parser.add_argument("command", nargs="+", help="the command to run in the sandbox")
    args = parser.parse_args()

    if args.volumes == "-":
        volumes_json = sys.stdin.read()
    else:
        with open(args.volumes, encoding="utf-8") as f:
            volumes_json = f.read()
    try:
        mounts = [sdk_mount(m) for m in translate(volumes_json, args.driver, args.translate, args.name_prefix)]
    except InvalidVolumes as e:
        print(e, file=sys.stderr)
        return 2

    status, stdout, stderr = run_sandbox(docker.from_env(), args.image, args.command, mounts)
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
