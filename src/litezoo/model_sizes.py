"""The zoo's sizes as a literal table, so ``litezoo models`` answers without importing torch or building a model.

One row per registered name (``<name>_cifar`` forms included): family, default input size, parameters and
multiply-accumulates (conv + linear, batch 1, at the default size) with 1000 classes, and what one more class
adds to each -- the classifier is the only part that depends on the class count, and linearly, so the counts
for ``num_classes = k`` are ``params + (k - 1000) * params_per_class`` (likewise MACs).

tests/test_zoo.py rebuilds every model and checks each row at two class counts; when a model changes, it fails
and prints the new rows. ``python -m litezoo.model_sizes`` prints the whole table from real counts.
"""

from __future__ import annotations

from typing import NamedTuple


class ModelSize(NamedTuple):
    family: str
    input_size: int
    params: int  # at 1000 classes
    macs: int  # at 1000 classes, default input size
    params_per_class: int
    macs_per_class: int

    def at(self, num_classes: int) -> tuple[int, int]:
        """(params, MACs) with ``num_classes`` outputs."""
        extra = num_classes - 1000
        return self.params + extra * self.params_per_class, self.macs + extra * self.macs_per_class


def measure(name: str) -> ModelSize:
    """Count one registered model on the meta device (no memory, no weights): the row the table should hold."""
    import torch  # only when measuring: the table itself must not need torch

    from litezoo.analysis import count_macs, count_params
    from litezoo.registry import create_model, model_info

    info = model_info(name)
    counts = []
    for num_classes in (1, 1000):
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes)
        counts.append((count_params(model), count_macs(model, info.default_size)))
    (p1, m1), (p1000, m1000) = counts
    return ModelSize(info.family, info.default_size, p1000, m1000, (p1000 - p1) // 999, (m1000 - m1) // 999)


def format_row(name: str, size: ModelSize) -> str:
    """One line of ``SIZES`` as Python source."""
    numbers = ", ".join(f"{v:_}" for v in size[2:])
    return f'    "{name}": ModelSize("{size.family}", {size.input_size}, {numbers}),'


# name: ModelSize(family, input size, params, MACs, params per class, MACs per class)
SIZES: dict[str, ModelSize] = {
    "efficientnet_b0": ModelSize("efficientnet", 224, 5_288_548, 385_814_752, 1_281, 1_280),
    "efficientnet_b0_cifar": ModelSize("efficientnet", 32, 5_288_548, 33_246_592, 1_281, 1_280),
    "efficientnet_b1": ModelSize("efficientnet", 240, 7_794_184, 686_802_832, 1_281, 1_280),
    "efficientnet_b1_cifar": ModelSize("efficientnet", 32, 7_794_184, 48_695_680, 1_281, 1_280),
    "efficientnet_b2": ModelSize("efficientnet", 260, 9_109_994, 993_561_872, 1_409, 1_408),
    "efficientnet_b2_cifar": ModelSize("efficientnet", 32, 9_109_994, 56_292_480, 1_409, 1_408),
    "efficientnet_b3": ModelSize("efficientnet", 300, 12_233_232, 1_827_141_392, 1_537, 1_536),
    "efficientnet_b3_cifar": ModelSize("efficientnet", 32, 12_233_232, 81_706_880, 1_537, 1_536),
    "efficientnet_b4": ModelSize("efficientnet", 380, 19_341_616, 4_393_771_024, 1_793, 1_792),
    "efficientnet_b4_cifar": ModelSize("efficientnet", 32, 19_341_616, 127_260_512, 1_793, 1_792),
    "efficientnet_b5": ModelSize("efficientnet", 456, 30_389_784, 10_266_384_752, 2_049, 2_048),
    "efficientnet_b5_cifar": ModelSize("efficientnet", 32, 30_389_784, 198_978_624, 2_049, 2_048),
    "efficientnet_b6": ModelSize("efficientnet", 528, 43_040_704, 19_067_593_536, 2_305, 2_304),
    "efficientnet_b6_cifar": ModelSize("efficientnet", 32, 43_040_704, 283_285_728, 2_305, 2_304),
    "efficientnet_b7": ModelSize("efficientnet", 600, 66_347_960, 37_745_884_192, 2_561, 2_560),
    "efficientnet_b7_cifar": ModelSize("efficientnet", 32, 66_347_960, 435_309_312, 2_561, 2_560),
    "ghostnet_x1_0": ModelSize("ghostnet", 224, 5_182_508, 141_150_512, 1_281, 1_280),
    "ghostnet_x1_0_cifar": ModelSize("ghostnet", 32, 5_182_508, 15_203_072, 1_281, 1_280),
    "ghostnet_x1_3": ModelSize("ghostnet", 224, 7_358_820, 227_003_256, 1_281, 1_280),
    "ghostnet_x1_3_cifar": ModelSize("ghostnet", 32, 7_358_820, 23_502_816, 1_281, 1_280),
    "mobilenet_v1_x0_25": ModelSize("mobilenet_v1", 224, 470_072, 41_030_272, 257, 256),
    "mobilenet_v1_x0_25_cifar": ModelSize("mobilenet_v1", 32, 470_072, 3_584_512, 257, 256),
    "mobilenet_v1_x0_5": ModelSize("mobilenet_v1", 224, 1_331_592, 149_497_088, 513, 512),
    "mobilenet_v1_x0_5_cifar": ModelSize("mobilenet_v1", 32, 1_331_592, 12_674_048, 513, 512),
    "mobilenet_v1_x0_75": ModelSize("mobilenet_v1", 224, 2_585_560, 325_400_448, 769, 768),
    "mobilenet_v1_x0_75_cifar": ModelSize("mobilenet_v1", 32, 2_585_560, 27_268_608, 769, 768),
    "mobilenet_v1_x1_0": ModelSize("mobilenet_v1", 224, 4_231_976, 568_740_352, 1_025, 1_024),
    "mobilenet_v1_x1_0_cifar": ModelSize("mobilenet_v1", 32, 4_231_976, 47_368_192, 1_025, 1_024),
    "mobilenet_v2_x0_35": ModelSize("mobilenet_v2", 224, 1_677_128, 59_285_808, 1_281, 1_280),
    "mobilenet_v2_x0_35_cifar": ModelSize("mobilenet_v2", 32, 1_677_128, 6_015_168, 1_281, 1_280),
    "mobilenet_v2_x0_5": ModelSize("mobilenet_v2", 224, 1_968_680, 97_131_840, 1_281, 1_280),
    "mobilenet_v2_x0_5_cifar": ModelSize("mobilenet_v2", 32, 1_968_680, 9_104_640, 1_281, 1_280),
    "mobilenet_v2_x0_75": ModelSize("mobilenet_v2", 224, 2_636_424, 209_069_792, 1_281, 1_280),
    "mobilenet_v2_x0_75_cifar": ModelSize("mobilenet_v2", 32, 2_636_424, 18_242_432, 1_281, 1_280),
    "mobilenet_v2_x1_0": ModelSize("mobilenet_v2", 224, 3_504_872, 300_774_272, 1_281, 1_280),
    "mobilenet_v2_x1_0_cifar": ModelSize("mobilenet_v2", 32, 3_504_872, 25_728_512, 1_281, 1_280),
    "mobilenet_v2_x1_4": ModelSize("mobilenet_v2", 224, 6_108_776, 582_195_824, 1_793, 1_792),
    "mobilenet_v2_x1_4_cifar": ModelSize("mobilenet_v2", 32, 6_108_776, 49_171_904, 1_793, 1_792),
    "mobilenet_v3_large_x0_75": ModelSize("mobilenet_v3", 224, 3_377_576, 140_033_816, 961, 960),
    "mobilenet_v3_large_x0_75_cifar": ModelSize("mobilenet_v3", 32, 3_377_576, 13_738_976, 961, 960),
    "mobilenet_v3_large_x1_0": ModelSize("mobilenet_v3", 224, 5_483_032, 216_589_760, 1_281, 1_280),
    "mobilenet_v3_large_x1_0_cifar": ModelSize("mobilenet_v3", 32, 5_483_032, 21_368_960, 1_281, 1_280),
    "mobilenet_v3_small_x0_75": ModelSize("mobilenet_v3", 224, 1_653_920, 39_115_576, 769, 768),
    "mobilenet_v3_small_x0_75_cifar": ModelSize("mobilenet_v3", 32, 1_653_920, 4_449_376, 769, 768),
    "mobilenet_v3_small_x1_0": ModelSize("mobilenet_v3", 224, 2_542_856, 56_510_400, 1_025, 1_024),
    "mobilenet_v3_small_x1_0_cifar": ModelSize("mobilenet_v3", 32, 2_542_856, 6_516_480, 1_025, 1_024),
    "shufflenet_v1_g1_x0_5": ModelSize("shufflenet_v1", 224, 534_484, 38_517_408, 289, 288),
    "shufflenet_v1_g1_x0_5_cifar": ModelSize("shufflenet_v1", 32, 534_484, 11_775_744, 289, 288),
    "shufflenet_v1_g1_x1_0": ModelSize("shufflenet_v1", 224, 1_531_936, 143_078_976, 577, 576),
    "shufflenet_v1_g1_x1_0_cifar": ModelSize("shufflenet_v1", 32, 1_531_936, 45_116_928, 577, 576),
    "shufflenet_v1_g1_x1_5": ModelSize("shufflenet_v1", 224, 2_993_032, 308_096_352, 865, 864),
    "shufflenet_v1_g1_x1_5_cifar": ModelSize("shufflenet_v1", 32, 2_993_032, 99_194_112, 865, 864),
    "shufflenet_v1_g1_x2_0": ModelSize("shufflenet_v1", 224, 4_918_744, 550_334_592, 1_153, 1_152),
    "shufflenet_v1_g1_x2_0_cifar": ModelSize("shufflenet_v1", 32, 4_918_744, 176_495_616, 1_153, 1_152),
    "shufflenet_v1_g2_x1_0": ModelSize("shufflenet_v1", 224, 1_733_848, 140_836_512, 801, 800),
    "shufflenet_v1_g2_x1_0_cifar": ModelSize("shufflenet_v1", 32, 1_733_848, 44_535_552, 801, 800),
    "shufflenet_v1_g2_x2_0": ModelSize("shufflenet_v1", 224, 5_257_896, 539_138_624, 1_601, 1_600),
    "shufflenet_v1_g2_x2_0_cifar": ModelSize("shufflenet_v1", 32, 5_257_896, 173_141_504, 1_601, 1_600),
    "shufflenet_v1_g3_x0_5": ModelSize("shufflenet_v1", 224, 718_324, 37_589_856, 481, 480),
    "shufflenet_v1_g3_x0_5_cifar": ModelSize("shufflenet_v1", 32, 718_324, 11_602_176, 481, 480),
    "shufflenet_v1_g3_x1_0": ModelSize("shufflenet_v1", 224, 1_865_728, 137_460_672, 961, 960),
    "shufflenet_v1_g3_x1_0_cifar": ModelSize("shufflenet_v1", 32, 1_865_728, 43_540_992, 961, 960),
    "shufflenet_v1_g3_x1_5": ModelSize("shufflenet_v1", 224, 3_442_168, 292_443_552, 1_441, 1_440),
    "shufflenet_v1_g3_x1_5_cifar": ModelSize("shufflenet_v1", 32, 3_442_168, 94_470_912, 1_441, 1_440),
    "shufflenet_v1_g3_x2_0": ModelSize("shufflenet_v1", 224, 5_450_776, 524_045_184, 1_921, 1_920),
    "shufflenet_v1_g3_x2_0_cifar": ModelSize("shufflenet_v1", 32, 5_450_776, 168_428_544, 1_921, 1_920),
    "shufflenet_v1_g4_x1_0": ModelSize("shufflenet_v1", 224, 1_968_344, 134_339_776, 1_089, 1_088),
    "shufflenet_v1_g4_x1_0_cifar": ModelSize("shufflenet_v1", 32, 1_968_344, 42_608_128, 1_089, 1_088),
    "shufflenet_v1_g4_x2_0": ModelSize("shufflenet_v1", 224, 5_593_528, 510_289_536, 2_177, 2_176),
    "shufflenet_v1_g4_x2_0_cifar": ModelSize("shufflenet_v1", 32, 5_593_528, 164_109_312, 2_177, 2_176),
    "shufflenet_v1_g8_x0_5": ModelSize("shufflenet_v1", 224, 1_011_448, 40_469_760, 769, 768),
    "shufflenet_v1_g8_x0_5_cifar": ModelSize("shufflenet_v1", 32, 1_011_448, 12_404_736, 769, 768),
    "shufflenet_v1_g8_x1_0": ModelSize("shufflenet_v1", 224, 2_434_768, 138_365_952, 1_537, 1_536),
    "shufflenet_v1_g8_x1_0_cifar": ModelSize("shufflenet_v1", 32, 2_434_768, 44_224_512, 1_537, 1_536),
    "shufflenet_v1_g8_x1_5": ModelSize("shufflenet_v1", 224, 4_269_952, 290_188_800, 2_305, 2_304),
    "shufflenet_v1_g8_x1_5_cifar": ModelSize("shufflenet_v1", 32, 4_269_952, 94_316_544, 2_305, 2_304),
    "shufflenet_v1_g8_x2_0": ModelSize("shufflenet_v1", 224, 6_522_232, 521_942_016, 3_073, 3_072),
    "shufflenet_v1_g8_x2_0_cifar": ModelSize("shufflenet_v1", 32, 6_522_232, 168_517_632, 3_073, 3_072),
    "shufflenet_v2_x0_5": ModelSize("shufflenet_v2", 224, 1_366_792, 40_476_448, 1_025, 1_024),
    "shufflenet_v2_x0_5_cifar": ModelSize("shufflenet_v2", 32, 1_366_792, 11_915_776, 1_025, 1_024),
    "shufflenet_v2_x1_0": ModelSize("shufflenet_v2", 224, 2_278_604, 144_907_992, 1_025, 1_024),
    "shufflenet_v2_x1_0_cifar": ModelSize("shufflenet_v2", 32, 2_278_604, 46_015_872, 1_025, 1_024),
    "shufflenet_v2_x1_5": ModelSize("shufflenet_v2", 224, 3_503_624, 295_759_392, 1_025, 1_024),
    "shufflenet_v2_x1_5_cifar": ModelSize("shufflenet_v2", 32, 3_503_624, 95_273_472, 1_025, 1_024),
    "shufflenet_v2_x2_0": ModelSize("shufflenet_v2", 224, 7_393_996, 583_253_464, 2_049, 2_048),
    "shufflenet_v2_x2_0_cifar": ModelSize("shufflenet_v2", 32, 7_393_996, 189_838_720, 2_049, 2_048),
    "squeezenet1_0": ModelSize("squeezenet", 224, 1_248_424, 818_924_576, 513, 86_528),
    "squeezenet1_0_cifar": ModelSize("squeezenet", 32, 1_236_904, 234_651_648, 513, 32_768),
    "squeezenet1_0_complex_bypass": ModelSize("squeezenet", 224, 1_589_672, 1_165_298_720, 513, 86_528),
    "squeezenet1_0_complex_bypass_cifar": ModelSize("squeezenet", 32, 1_578_152, 356_286_464, 513, 32_768),
    "squeezenet1_0_simple_bypass": ModelSize("squeezenet", 224, 1_248_424, 818_924_576, 513, 86_528),
    "squeezenet1_0_simple_bypass_cifar": ModelSize("squeezenet", 32, 1_236_904, 234_651_648, 513, 32_768),
    "squeezenet1_1": ModelSize("squeezenet", 224, 1_235_496, 349_151_936, 513, 86_528),
    "squeezenet1_1_cifar": ModelSize("squeezenet", 32, 1_235_496, 121_176_064, 513, 32_768),
    "vgg11": ModelSize("vgg", 224, 132_863_336, 7_609_090_048, 4_097, 4_096),
    "vgg11_bn": ModelSize("vgg", 224, 132_868_840, 7_609_090_048, 4_097, 4_096),
    "vgg11_bn_cifar": ModelSize("vgg", 32, 9_738_984, 153_276_416, 513, 512),
    "vgg11_cifar": ModelSize("vgg", 32, 9_733_480, 153_276_416, 513, 512),
    "vgg13": ModelSize("vgg", 224, 133_047_848, 11_308_466_176, 4_097, 4_096),
    "vgg13_bn": ModelSize("vgg", 224, 133_053_736, 11_308_466_176, 4_097, 4_096),
    "vgg13_bn_cifar": ModelSize("vgg", 32, 9_923_880, 228_773_888, 513, 512),
    "vgg13_cifar": ModelSize("vgg", 32, 9_917_992, 228_773_888, 513, 512),
    "vgg16": ModelSize("vgg", 224, 138_357_544, 15_470_264_320, 4_097, 4_096),
    "vgg16_bn": ModelSize("vgg", 224, 138_365_992, 15_470_264_320, 4_097, 4_096),
    "vgg16_bn_cifar": ModelSize("vgg", 32, 15_236_136, 313_708_544, 513, 512),
    "vgg16_cifar": ModelSize("vgg", 32, 15_227_688, 313_708_544, 513, 512),
    "vgg19": ModelSize("vgg", 224, 143_667_240, 19_632_062_464, 4_097, 4_096),
    "vgg19_bn": ModelSize("vgg", 224, 143_678_248, 19_632_062_464, 4_097, 4_096),
    "vgg19_bn_cifar": ModelSize("vgg", 32, 20_548_392, 398_643_200, 513, 512),
    "vgg19_cifar": ModelSize("vgg", 32, 20_537_384, 398_643_200, 513, 512),
    "vgg_fast": ModelSize("vgg_fast", 224, 2_225_944, 462_549_280, 256, 256),
    "vgg_fast_cifar": ModelSize("vgg_fast", 32, 2_225_944, 118_400_800, 256, 256),
    "vgg_fast_wide": ModelSize("vgg_fast", 224, 4_986_392, 1_149_084_960, 384, 384),
    "vgg_fast_wide_cifar": ModelSize("vgg_fast", 32, 4_986_392, 301_941_024, 384, 384),
    "vit_small": ModelSize("vit", 224, 22_050_664, 4_598_882_304, 385, 384),
    "vit_small_cifar": ModelSize("vit", 32, 21_723_496, 1_420_689_408, 385, 384),
    "vit_tiny": ModelSize("vit", 224, 5_717_416, 1_253_683_200, 193, 192),
    "vit_tiny_cifar": ModelSize("vit", 32, 5_553_832, 365_297_664, 193, 192),
}


if __name__ == "__main__":  # python -m litezoo.model_sizes: print the table from real counts
    from litezoo.registry import list_models

    for model_name in list_models():
        print(format_row(model_name, measure(model_name)))
