"""The asset registry and cache: checksums, placement errors, and no client calls when cached."""

import hashlib
import io
import re
import tarfile
import zipfile

import pytest

from reds_jax import assets
from reds_jax.assets import Asset, AssetError

PAYLOAD = b"tiny weights \x00\x01\x02"


def _asset(client="pip", payload=PAYLOAD):
    path = "tiny_pkg/w.bin" if client == "pip" else "model/w.bin"
    return Asset(
        name=f"tiny_{client}",
        client=client,
        package="tiny-pkg" if client == "pip" else "@someone/tiny",
        version="0.1.0",
        path=path,
        sha256=hashlib.sha256(payload).hexdigest(),
        licence="MIT",
        size=len(payload),
    )


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache root; any real client call fails the test."""
    monkeypatch.setenv("REDS_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("REDS_JAX_OFFLINE", raising=False)

    def no_client(*args, **kwargs):
        raise AssertionError("a package client was invoked")

    monkeypatch.setattr(assets.subprocess, "run", no_client)
    return tmp_path / "cache"


def _fake_client(monkeypatch, payload=PAYLOAD):
    """Replaces the client with one that writes an archive holding ``payload``; counts calls."""
    calls = []

    def run_client(asset, workdir):
        calls.append(asset.name)
        if asset.client == "pip":
            archive = workdir / "tiny_pkg-0.1.0-py3-none-any.whl"
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr(asset.path, payload)
        else:
            archive = workdir / "tiny-0.1.0.tgz"
            with tarfile.open(archive, "w:gz") as tf:
                info = tarfile.TarInfo(f"package/{asset.path}")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
        return archive

    monkeypatch.setattr(assets, "_run_client", run_client)
    return calls


def test_registry():
    dcgan = assets.get("face_dcgan")
    assert (dcgan.client, dcgan.requirement) == ("pip", "gan-face-generate==1.1.1")
    assert dcgan.path == "gan_face_generate/weights.tar" and dcgan.size == 14_322_251
    for a in assets.ASSETS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), a.name
        assert a.client in ("pip", "npm") and a.size > 0
    face_api = {a.path for a in assets.ASSETS.values() if a.package == "@vladmandic/face-api"}
    assert "model/face_recognition_model.bin" in face_api
    assert "model/face_recognition_model-weights_manifest.json" in face_api
    with pytest.raises(KeyError, match="face_dcgan"):
        assets.get("no_such_asset")


def test_cache_layout_keeps_package_files_together(tmp_path):
    rec = assets.cache_path("face_api_recognition_weights", tmp_path)
    man = assets.cache_path("face_api_recognition_manifest", tmp_path)
    assert rec.parent == man.parent and rec.name == "face_recognition_model.bin"


def test_offline_missing_file_says_where_and_how(cache, monkeypatch):
    monkeypatch.setenv("REDS_JAX_OFFLINE", "1")
    target = assets.cache_path("face_dcgan")
    with pytest.raises(AssetError) as err:
        assets.fetch("face_dcgan")
    msg = str(err.value)
    assert str(target) in msg
    assert "pip download --no-deps" in msg and "gan-face-generate==1.1.1" in msg
    assert assets.get("face_dcgan").sha256 in msg
    assert isinstance(err.value, FileNotFoundError)


def test_placed_file_is_used_without_a_client(cache, monkeypatch):
    monkeypatch.setenv("REDS_JAX_OFFLINE", "1")
    asset = _asset()
    target = assets.cache_path(asset)
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    assert assets.fetch(asset) == target


@pytest.mark.parametrize("corrupt", [PAYLOAD[:-1] + b"X", PAYLOAD[:5]])
def test_corrupt_cache_file_is_deleted_with_a_clear_error(cache, monkeypatch, corrupt):
    monkeypatch.setenv("REDS_JAX_OFFLINE", "1")
    asset = _asset()
    target = assets.cache_path(asset)
    target.parent.mkdir(parents=True)
    target.write_bytes(corrupt)
    with pytest.warns(UserWarning, match="corrupt"), pytest.raises(AssetError) as err:
        assets.fetch(asset)
    assert "corrupt" in str(err.value) and str(target) in str(err.value)
    assert not target.exists()


@pytest.mark.parametrize("client", ["pip", "npm"])
def test_download_extracts_verifies_and_caches(cache, monkeypatch, client):
    calls = _fake_client(monkeypatch)
    asset = _asset(client)
    path = assets.fetch(asset)
    assert path == assets.cache_path(asset) and path.read_bytes() == PAYLOAD
    assert assets.fetch(asset) == path
    assert calls == [asset.name]  # the second call only read the cache


def test_download_with_wrong_checksum_writes_nothing(cache, monkeypatch):
    _fake_client(monkeypatch, payload=b"something else")
    asset = _asset()
    with pytest.raises(AssetError, match="Checksum mismatch"):
        assets.fetch(asset)
    assert not assets.cache_path(asset).exists()


def test_missing_client_gives_placement_help(cache, monkeypatch):
    monkeypatch.setattr(assets.shutil, "which", lambda name: None)
    asset = _asset("npm")
    with pytest.raises(AssetError, match="npm client is not installed") as err:
        assets.fetch(asset)
    assert str(assets.cache_path(asset)) in str(err.value)
    assert "npm pack @someone/tiny@0.1.0" in str(err.value)


def test_failing_client_reports_its_output(cache, monkeypatch):
    def failing_run(cmd, **kwargs):
        assert "--no-deps" in cmd  # never pulls torch & co.
        return assets.subprocess.CompletedProcess(cmd, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(assets.subprocess, "run", failing_run)
    asset = _asset()
    with pytest.raises(AssetError, match="network is unreachable") as err:
        assets.fetch(asset)
    assert str(assets.cache_path(asset)) in str(err.value)
