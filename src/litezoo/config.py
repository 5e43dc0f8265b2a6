"""Typed run configuration: dataclass defaults <- YAML recipe <- command-line flags.

The resolved config is saved as ``config.yaml`` in the run folder and inside every checkpoint.

(Schema fixed here; loading/merging/override logic: see the functions below.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    name: str = "shufflenet_v2_x1_0_cifar"  # a registry name (see `litezoo models`)
    num_classes: int | None = None  # None: taken from the dataset's class count
    in_chans: int = 3
    drop_rate: float | None = None  # None: the builder's default


@dataclass
class DataConfig:
    path: str = "cifar10"  # a folder/archive path, or a known dataset name ('cifar10')
    image_size: int | None = None  # None: the model's default resolution (32 for *_cifar)
    cache_dir: str | None = None  # None: $LITEZOO_CACHE or ~/.cache/litezoo
    batch_size: int = 128
    eval_batch_size: int = 500
    crop_padding: int = 4  # random crop with this zero padding (32 px datasets)
    random_resized_crop: bool | None = None  # None: on for image folders above 64 px, off for 32 px data
    flip: bool = True
    cutout: int = 0  # side of the square cut out (0: off)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    limit_train: int | None = None  # use only the first N training images (quick runs and tests)
    limit_eval: int | None = None


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1  # peak learning rate (for batch_size above; not rescaled automatically)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    no_decay_bn_bias: bool = True  # no weight decay on BN parameters and biases
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None  # max global grad norm; None: off


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | onecycle | steps | poly | linear | constant
    warmup_epochs: float = 0.0  # linear warm-up from warmup_start_factor * lr
    warmup_start_factor: float = 0.1
    min_lr: float = 0.0  # floor for cosine / poly / linear
    # one-cycle (torch's OneCycleLR conventions)
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    cycle_momentum: bool = True
    # steps: multiply by gamma at these fractions of training
    milestones: tuple[float, ...] = (0.3, 0.6, 0.8)
    gamma: float = 0.1
    # poly: lr * (1 - t) ** power
    power: float = 2.0


@dataclass
class TrainConfig:
    epochs: int = 30
    seed: int = 0
    label_smoothing: float = 0.0
    amp: str = "auto"  # auto | bf16 | fp16 | off
    device: str = "auto"  # auto | cpu | cuda | mps
    channels_last: bool | str = "auto"  # auto: on where measured faster (CUDA); True/False to force
    ema_decay: float | None = None  # e.g. 0.999; None: no EMA
    ema_eval: bool = True  # evaluate (and pick best by) the EMA weights when EMA is on
    tta_flip: bool = False  # average logits with the horizontally flipped image at evaluation
    eval_every: int = 1  # epochs between evaluations
    on_nan: str = "stop"  # stop | skip
    compile: bool = False  # torch.compile the model
    threads: int | None = None  # torch.set_num_threads; None: leave torch's default
    log_every: int = 50  # steps between progress updates


@dataclass
class CheckpointConfig:
    keep: int = 5  # keep the last K epoch checkpoints (the source tutorial's keep_checkpoint_max=5)
    every_steps: int | None = None  # also save every N steps (None: only at epoch ends)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
