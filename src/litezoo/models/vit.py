"""Vision Transformer (Dosovitskiy et al.: "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", ICLR 2021, arXiv:2010.11929), in the small sizes of DeiT (Touvron et al., arXiv:2012.12877).

The image is cut into P x P patches, each linearly embedded (a PxP/P conv), a learned class token is prepended,
a learned position embedding is added, and the sequence goes through pre-norm Transformer blocks::

    x = x + DropPath(MSA(LN(x)))       # multi-head self-attention
    x = x + DropPath(MLP(LN(x)))       # Linear(D, 4D) -> GELU -> Linear(4D, D)

followed by a final LayerNorm; the classifier reads the class token.

``forward_features`` returns the *normalised token sequence* ``(N, 1 + h*w, D)`` (class token first), not a
feature map; ``forward_head(x, pre_logits=True)`` returns the class token ``(N, D)``.

Input sizes: the position embedding is learned for one grid (14x14 patches at 224 px; CIFAR form: 8x8 patches of
4 px at 32 px). Any other size whose sides are multiples of the patch size works: the embedding is resized to the
new grid by bicubic interpolation (paper Sec. 3.2, "fine-tuning and higher resolution"). Other sizes raise
``ValueError``.

Regularisation defaults are DeiT's, whose recipe defines these small models: no dropout (``drop_rate=0``) and
stochastic depth 0.1, rising linearly over the blocks. ``drop_rate`` is applied where the ViT paper applies
dropout: after the position embedding is added and after every dense layer except the qkv projection.
Initialisation follows DeiT/timm: truncated-normal(0.02) linears and position embedding, zero biases.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from litezoo.layers import DropPath, ZooModel, linear_classifier, maybe_dropout
from litezoo.registry import register_model


class PatchEmbed(nn.Module):
    """Non-overlapping P x P patches -> D-dim tokens, as one conv with kernel = stride = P."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, D, H/P, W/P)
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"ViT: input size {height}x{width} is not divisible by the patch size {self.patch_size} "
                f"(both sides must be multiples of {self.patch_size})"
            )
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q K^T / sqrt(d)) V in each of ``num_heads`` heads of size d = D / heads."""

    def __init__(self, dim: int, num_heads: int, *, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: dim {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)  # Q, K and V of all heads in one matmul
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = maybe_dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, L, D) -> (N, L, D)
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim)  # (N, L, 3, heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, heads, L, d)
        # Fused kernel (flash / memory-efficient where available); default scale is 1/sqrt(d).
        x = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, d)
        x = x.transpose(1, 2).reshape(n, length, dim)  # (N, L, heads*d): heads side by side
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """Linear(D, hidden) -> GELU -> dropout -> Linear(hidden, D) -> dropout."""

    def __init__(self, dim: int, hidden: int, *, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = maybe_dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, L, D) -> (N, L, D)
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm Transformer encoder block (paper Eq. 2-3) with stochastic depth on both residual branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, *, drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, L, D) -> (N, L, D)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TokenHead(nn.Module):
    """Class token -> Linear(D, classes). Same interface as ``ClassifierHead``; ``num_classes=0`` returns the token."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.in_features = in_features
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = linear_classifier(self.in_features, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # (N, 1+L, D) -> (N, classes)
        x = x[:, 0]  # (N, D): the class token
        return x if pre_logits else self.fc(x)


class VisionTransformer(ZooModel):
    """Patch embedding + class token + position embedding -> ``depth`` blocks -> LayerNorm -> head on class token."""

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
    ):
        super().__init__(num_classes, in_chans)
        if img_size % patch_size:
            raise ValueError(f"ViT: img_size {img_size} is not divisible by patch_size {patch_size}")
        self.num_features = embed_dim
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)  # the grid pos_embed is learned for

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # One learned vector per position, the class token's included (paper: E_pos in R^{(N+1) x D}).
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size[0] * self.grid_size[1], embed_dim))
        self.pos_drop = maybe_dropout(drop_rate)
        self.blocks = nn.Sequential(
            *[
                Block(embed_dim, num_heads, mlp_ratio, drop=drop_rate, drop_path=drop_path_rate * i / max(depth - 1, 1))
                for i in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = TokenHead(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The position embedding for an ``(h, w)`` patch grid: (1, 1 + h*w, D), bicubic-resized when needed."""
        if grid == self.grid_size:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]  # (1, 1, D), (1, h0*w0, D)
        dim = patch_pos.shape[-1]
        patch_pos = patch_pos.reshape(1, *self.grid_size, dim).permute(0, 3, 1, 2)  # (1, D, h0, w0)
        # antialias only matters when shrinking the grid (e.g. 224-px model on 32 px inputs).
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False, antialias=True)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], dim)  # (1, h*w, D)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 1 + H/P * W/P, D)
        x = self.patch_embed(x)  # (N, D, h, w)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (N, h*w, D): row-major patch order
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (N, 1 + h*w, D)
        x = self.pos_drop(x + self.position_embedding(grid))
        x = self.blocks(x)
        return self.norm(x)


def _vit(
    patch_size: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    small_input: bool = False,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.1,
) -> VisionTransformer:
    # CIFAR form: 4 px patches on 32 px images (an 8x8 grid, 64 tokens + class token), the usual CIFAR ViT.
    img_size, patch_size = (32, 4) if small_input else (224, patch_size)
    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4.0,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


# (patch size, embedding width, depth, heads) per size: DeiT Table 1 (tiny, small).


@register_model(family="vit", builder=_vit)
def vit_tiny(**kwargs):
    return _vit(16, 192, 12, 3, **kwargs)


@register_model(family="vit", builder=_vit)
def vit_small(**kwargs):
    return _vit(16, 384, 12, 6, **kwargs)
