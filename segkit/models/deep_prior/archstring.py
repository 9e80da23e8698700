"""Architecture strings in the DP-NAS style: a random-weight encoder written as one line of text.

    [C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]

    C(features,kernel,stride,pad,skip)   a convolution: `features` output channels, a kernel x kernel window,
                                         the given stride and zero padding, no bias, then ReLU.
                                         skip=0: y = ReLU(conv(x))
                                         skip=1: y = ReLU(conv(x)) + shortcut(x), a residual connection;
                                                 shortcut = x when the channels stay the same, otherwise a
                                                 1x1 convolution (random too). The conv must keep the spatial
                                                 size: stride 1 and pad = (kernel - 1) / 2 with an odd kernel.
    P(size,stride)                       max pooling over size x size windows, no padding.

Spatial size after a layer, for an input of n pixels (PyTorch's floor rule):

    C: n' = floor((n + 2 pad - kernel) / stride) + 1          P: n' = floor((n - size) / stride) + 1

The encoder's output stride is the product of all strides; the linear head's logits at that coarse
resolution are upsampled bilinearly to the input size (see model.py). A string is *infeasible* for an input
size when some layer leaves less than one pixel or when the output stride exceeds the input size (the
coarsest map would be smaller than one pixel of the stride grid); the search rewards such nets with 0.

Differences from DP-NAS (ccc-frankfurt/DP-NAS): there the fifth field of C means "plain conv" when 1 and "a
wide-ResNet block of two 3x3 convs with batch norm" when 0, pooling is printed as P(size,stride,0,0) and a
string ends with the classifier SM(classes). Here `skip` says what its name says (1 = residual connection),
pooling has two fields, the head is not part of the string, and there is no batch norm (see model.py).

The canonical text has ", " between layers and no spaces inside a layer; `parse_arch` also accepts other
spacing, `format_arch` always prints the canonical form, so `format_arch(parse_arch(s)) == s` for canonical
strings and `parse_arch(format_arch(layers)) == layers` always.
"""

from __future__ import annotations

from dataclasses import dataclass

CONV_FIELDS = ("features", "kernel", "stride", "pad", "skip")
POOL_FIELDS = ("size", "stride")
GRAMMAR = "C(features,kernel,stride,pad,skip) or P(size,stride)"


@dataclass(frozen=True)
class Conv:
    """C(features,kernel,stride,pad,skip): conv (no bias) -> ReLU, plus the input when skip == 1."""

    features: int
    kernel: int
    stride: int
    pad: int
    skip: int

    def __str__(self) -> str:
        return f"C({self.features},{self.kernel},{self.stride},{self.pad},{self.skip})"

    def output_size(self, n: int) -> int:
        return (n + 2 * self.pad - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class Pool:
    """P(size,stride): max pooling over size x size windows with the given stride, no padding."""

    size: int
    stride: int

    def __str__(self) -> str:
        return f"P({self.size},{self.stride})"

    def output_size(self, n: int) -> int:
        return (n - self.size) // self.stride + 1


Layer = Conv | Pool


class ArchStringError(ValueError):
    """A malformed architecture string; the message names the bad token and its position (0-based)."""


class InfeasibleArchitecture(ValueError):
    """A well-formed architecture that cannot run on the given input size."""


def format_arch(layers) -> str:
    """The canonical string of a sequence of layers, e.g. '[C(16,3,1,1,0), P(2,2)]'."""
    return "[" + ", ".join(str(layer) for layer in layers) + "]"


def check_layer(layer: Layer) -> None:
    """ValueError when the numbers of one layer make no sense (independent of the input size)."""
    if isinstance(layer, Conv):
        if layer.features < 1 or layer.kernel < 1 or layer.stride < 1:
            raise ValueError(f"{layer}: features, kernel and stride must be >= 1")
        if not 0 <= layer.pad <= layer.kernel // 2:
            raise ValueError(f"{layer}: pad must be between 0 and kernel // 2 = {layer.kernel // 2}")
        if layer.skip not in (0, 1):
            raise ValueError(f"{layer}: skip must be 0 (plain) or 1 (residual connection)")
        if layer.skip == 1 and (layer.stride != 1 or 2 * layer.pad != layer.kernel - 1):
            raise ValueError(
                f"{layer}: a residual layer (skip=1) must keep the spatial size to add its input: "
                f"stride 1 and pad = (kernel - 1) / 2 with an odd kernel, e.g. C({layer.features},3,1,1,1)"
            )
    elif isinstance(layer, Pool):
        if layer.size < 1 or layer.stride < 1:
            raise ValueError(f"{layer}: size and stride must be >= 1")
    else:
        raise TypeError(f"not a layer: {layer!r} (expected Conv or Pool)")


class _Scanner:
    """Reads an architecture string left to right; every error names the position and what was found."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, what: str, pos: int | None = None) -> ArchStringError:
        pos = self.pos if pos is None else pos
        found = repr(self.text[pos]) if pos < len(self.text) else "the end of the string"
        return ArchStringError(f"architecture string {self.text!r}: at position {pos}: expected {what}, "
                               f"found {found}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_spaces()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise self.fail(what)
        self.pos += 1

    def integer(self, field: str) -> int:
        self.skip_spaces()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1
        if start == self.pos:
            raise self.fail(f"a non-negative integer for {field}")
        return int(self.text[start : self.pos])

    def layer(self) -> Layer:
        self.skip_spaces()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos].isalpha():
            self.pos += 1
        name = self.text[start : self.pos]
        if name not in ("C", "P"):
            if start == len(self.text):
                raise self.fail(f"a layer, {GRAMMAR}")
            token = name or self.text[start]
            raise ArchStringError(f"architecture string {self.text!r}: at position {start}: unknown layer "
                                  f"{token!r}; expected {GRAMMAR}")
        fields = CONV_FIELDS if name == "C" else POOL_FIELDS
        self.expect("(", f"'(' after {name}")
        values = []
        for i, field in enumerate(fields):
            values.append(self.integer(f"{field} (field {i + 1} of {name}({','.join(fields)}))"))
            last = i == len(fields) - 1
            separator = ")" if last else ","
            if self.peek() != separator:
                if last and self.peek() == ",":
                    raise self.fail(f"')': {name} takes {len(fields)} numbers ({', '.join(fields)})")
                raise self.fail(f"{separator!r} after {field}")
            self.pos += 1
        layer = Conv(*values) if name == "C" else Pool(*values)
        try:
            check_layer(layer)
        except ValueError as error:
            message = f"architecture string {self.text!r}: at position {start}: {error}"
            raise ArchStringError(message) from None
        return layer


def parse_arch(text: str) -> tuple[Layer, ...]:
    """Parse '[C(16,3,1,1,0), P(2,2), ...]' into a tuple of Conv / Pool layers ('[]': no layer at all).

    Raises ArchStringError naming the position (0-based) and the token at fault, e.g.
    "at position 15: unknown layer 'X'; expected C(features,kernel,stride,pad,skip) or P(size,stride)".
    """
    if not isinstance(text, str):
        raise TypeError(f"an architecture string must be a str, got {type(text).__name__}")
    scanner = _Scanner(text)
    scanner.expect("[", "'[' (an architecture string is a list like [C(16,3,1,1,0), P(2,2)])")
    layers: list[Layer] = []
    if scanner.peek() == "]":
        scanner.pos += 1
    else:
        while True:
            layers.append(scanner.layer())
            if scanner.peek() == "]":
                scanner.pos += 1
                break
            scanner.expect(",", "',' between layers or ']' at the end")
    if scanner.peek():
        raise scanner.fail("nothing after the closing ']'")
    return tuple(layers)


def canonical_arch(text_or_layers) -> str:
    """The canonical string of an architecture given as a string (any spacing) or as layers."""
    layers = parse_arch(text_or_layers) if isinstance(text_or_layers, str) else tuple(text_or_layers)
    for layer in layers:
        check_layer(layer)
    return format_arch(layers)


def output_stride(layers) -> int:
    """Product of the strides of all layers (1 for no layer)."""
    stride = 1
    for layer in layers:
        stride *= layer.stride
    return stride


def out_channels(layers, in_channels: int = 3) -> int:
    """Channels of the encoder output: the features of the last conv (pooling keeps the channels)."""
    channels = in_channels
    for layer in layers:
        if isinstance(layer, Conv):
            channels = layer.features
    return channels


def spatial_sizes(layers, image_size: int | tuple[int, int]) -> list[tuple[int, int]]:
    """(height, width) after each layer for an input of `image_size`; may contain sizes < 1."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    sizes = []
    for layer in layers:
        h, w = layer.output_size(h), layer.output_size(w)
        sizes.append((h, w))
        if h < 1 or w < 1:
            break
    return sizes


def infeasibility(layers, image_size: int | tuple[int, int]) -> str | None:
    """Why `layers` cannot run on inputs of `image_size` (None when they can).

    Infeasible: a layer leaves less than one pixel (a kernel or window larger than its padded input), or
    the output stride is larger than the input's height or width.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    previous = (h, w)
    for index, ((oh, ow), layer) in enumerate(zip(spatial_sizes(layers, (h, w)), layers, strict=False)):
        if oh < 1 or ow < 1:
            return (f"layer {index} {layer} gets a {previous[0]}x{previous[1]} map and leaves "
                    f"{max(oh, 0)}x{max(ow, 0)} pixels")
        previous = (oh, ow)
    stride = output_stride(layers)
    if stride > min(h, w):
        return f"the output stride {stride} is larger than the {h}x{w} input"
    return None


def check_feasible(layers, image_size: int | tuple[int, int]) -> list[tuple[int, int]]:
    """The (height, width) after each layer; InfeasibleArchitecture (naming the layer) when it cannot run."""
    reason = infeasibility(layers, image_size)
    if reason is not None:
        raise InfeasibleArchitecture(f"{format_arch(layers)} is infeasible for {image_size} pixel inputs: "
                                     f"{reason}")
    return spatial_sizes(layers, image_size)
