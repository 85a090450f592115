from __future__ import annotations

import json

import pytest
import timm
import torch

from ssl_medbench.core.errors import DataError
from ssl_medbench.downstream.segmentation import SegmentationUNet
from ssl_medbench.networks import EncoderConfig, UNetDecoder, create_encoder
from ssl_medbench.networks.decoders import build_decoder
from ssl_medbench.networks.deconv_decoder import DeconvDecoder
from ssl_medbench.networks.weights import export_weights, import_weights, load_part, read_manifest, state_dict_sha256

SMALL = EncoderConfig(kwargs={"channels": [8, 16, 32, 64]})


def test_chen_vgg_is_a_timm_features_only_model():
    encoder = timm.create_model("chen_vgg", features_only=True, in_chans=4, channels=(8, 16, 32, 64))
    assert encoder.feature_info.channels() == [8, 16, 32, 64]
    assert encoder.feature_info.reduction() == [1, 2, 4, 8]
    assert [info["module"] for info in encoder.feature_info.get_dicts()] == [
        "stages.0",
        "stages.1",
        "stages.2",
        "stages.3",
    ]
    features = encoder(torch.randn(2, 4, 64, 64))
    assert [tuple(f.shape) for f in features] == [(2, 8, 64, 64), (2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    assert all(key.startswith("stages_") for key in encoder.state_dict())


def test_chen_vgg_refuses_pretrained_weights():
    with pytest.raises(ValueError, match="no published pretrained weights"):
        timm.create_model("chen_vgg", pretrained=True)


@pytest.mark.parametrize("config", [SMALL, EncoderConfig(name="resnet10t", kwargs={})])
def test_unet_decoder_restores_full_resolution_for_any_timm_encoder(config):
    encoder = create_encoder(config, in_chans=4)
    decoder = UNetDecoder.for_encoder(encoder)
    output = decoder(encoder(torch.randn(2, 4, 64, 64)))
    assert output.shape == (2, decoder.out_channels, 64, 64)


@pytest.mark.parametrize("config, layers", [(SMALL, 3), (EncoderConfig(name="resnet10t", kwargs={}), 5)])
def test_deconv_decoder_upsamples_the_deepest_features_to_full_resolution(config, layers):
    encoder = create_encoder(config, in_chans=4)
    decoder = build_decoder("deconv", encoder)
    assert isinstance(decoder, DeconvDecoder)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in decoder.modules()) == layers
    assert decoder(encoder(torch.randn(2, 4, 64, 64))).shape == (2, decoder.out_channels, 64, 64)


def test_unknown_decoder_and_odd_strides_are_refused():
    with pytest.raises(ValueError, match="unknown decoder 'mlp'"):
        build_decoder("mlp", create_encoder(SMALL, in_chans=4))
    with pytest.raises(ValueError, match="power-of-two"):
        DeconvDecoder(16, 6)


def test_unknown_encoder_is_a_config_error():
    from ssl_medbench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="not a timm model"):
        create_encoder(EncoderConfig(name="no_such_net"), in_chans=4)


def _trained_parts():
    torch.manual_seed(0)
    encoder = create_encoder(SMALL, 4)
    decoder = UNetDecoder.for_encoder(encoder)
    for parameter in [*encoder.parameters(), *decoder.parameters()]:
        parameter.data.normal_()
    return encoder, decoder


def test_weights_round_trip_strict(tmp_path):
    encoder, decoder = _trained_parts()
    manifest = export_weights(
        tmp_path, {"encoder": encoder, "decoder": decoder}, SMALL, 4, {"pretext_task": "x", "seed": 3}
    )
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert manifest["parts"]["encoder"]["sha256"] == state_dict_sha256(encoder.state_dict())
    _, loaded_encoder, loaded_decoder = import_weights(tmp_path)
    for original, loaded in ((encoder, loaded_encoder), (decoder, loaded_decoder)):
        for key, value in original.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key]), key


def test_pretext_weights_load_into_the_segmentation_unet_strictly(tmp_path):
    encoder, decoder = _trained_parts()
    export_weights(tmp_path, {"encoder": encoder, "decoder": decoder}, SMALL, 4, {})
    torch.manual_seed(1)
    target_encoder = create_encoder(SMALL, 4)
    target_decoder = UNetDecoder.for_encoder(target_encoder)
    manifest = read_manifest(tmp_path)
    load_part(tmp_path, manifest, "encoder", target_encoder)
    load_part(tmp_path, manifest, "decoder", target_decoder)
    model = SegmentationUNet(target_encoder, target_decoder, num_classes=4)
    assert torch.equal(model.encoder.stages_0[0][0].weight, encoder.stages_0[0][0].weight)
    assert state_dict_sha256(model.decoder.state_dict()) == manifest["parts"]["decoder"]["sha256"]


def test_corrupt_weights_and_mismatched_architecture_are_errors(tmp_path):
    encoder, _ = _trained_parts()
    export_weights(tmp_path, {"encoder": encoder}, SMALL, 4, {})
    manifest = read_manifest(tmp_path)
    other = create_encoder(EncoderConfig(kwargs={"channels": [8, 16, 32]}), 4)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_part(tmp_path, manifest, "encoder", other)
    state = torch.load(tmp_path / "encoder.pt")
    first = next(iter(state))
    state[first] = state[first] + 1
    torch.save(state, tmp_path / "encoder.pt")
    with pytest.raises(DataError, match="SHA-256 differs"):
        load_part(tmp_path, manifest, "encoder", create_encoder(SMALL, 4))
    with pytest.raises(DataError, match="no part 'decoder'"):
        load_part(tmp_path, manifest, "decoder", UNetDecoder.for_encoder(encoder))
