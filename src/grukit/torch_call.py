"""``torch.nn.GRU``'s calling convention, written once for every grukit module (GRU, QuantizedGRU,
MinGRU, MinGRUBlocks): a module gives what it computes on a padded batch [T, B, I] (and, if it can,
on a PackedSequence's data without padding); :func:`call_as_torch_gru` does the rest.

    input [T, B, I], [B, T, I] with batch_first, [T, I] unbatched, or a PackedSequence
    hx    [L*D, B, H] ([L*D, H] unbatched) or None
    ->    output like the input (a PackedSequence for one), h_n [L*D, B, H] ([L*D, H] unbatched)

A PackedSequence runs in its own longest-first order, so the output packs into the input's layout,
with hx and h_n permuted to and from the caller's batch order as torch.nn.GRU does.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .validation import check_input_features, check_lengths, check_packed_hx, check_sequence_input

PaddedRun = Callable[[Tensor, Optional[Tensor], Optional[Tensor]], Tuple[Tensor, Tensor]]
PackedRun = Callable[[Tensor, Tensor, Optional[Tensor]], Tuple[Tensor, Tensor]]


def call_as_torch_gru(
    run: PaddedRun,
    input: Union[Tensor, PackedSequence],
    hx: Optional[Tensor],
    input_size: int,
    batch_first: bool,
    like: Tensor,
    run_packed: Optional[PackedRun] = None,
    lengths=None,
) -> Tuple[Union[Tensor, PackedSequence], Tensor]:
    """torch.nn.GRU's call around a module's computation.

    Args:
        run: ``run(x [T, B, I], hx [L*D, B, H] or None, lengths [B] or None) -> (output [T, B, *],
            h_n [L*D, B, H])``, time first.
        input, hx: the module's call's arguments (see the module doc).
        input_size: I, checked against the input's last dimension.
        batch_first: the module's layout.
        like: a tensor of the module's dtype and device (its first weight) the input must match.
        run_packed: ``run_packed(data [N, I], batch_sizes [T], hx) -> (data [N, *], h_n)`` for a module
            that runs a PackedSequence without padding; None pads it and calls ``run``.
        lengths: [B] valid steps per sequence of a padded batch (QuantizedGRU's call takes them;
            torch.nn.GRU's does not).
    """
    if isinstance(input, PackedSequence):
        if lengths is not None:
            raise ValueError("lengths goes with a padded batch; a PackedSequence carries its own")
        check_input_features(input.data, input_size, like, packed=True)
        check_packed_hx(hx)
        if hx is not None and input.sorted_indices is not None:
            hx = hx.index_select(1, input.sorted_indices)
        if run_packed is not None:
            data, h_n = run_packed(input.data, input.batch_sizes, hx)
        else:
            padded, steps = pad_packed_sequence(PackedSequence(input.data, input.batch_sizes))
            output, h_n = run(padded, hx, steps)
            data = pack_padded_sequence(output, steps).data
        if input.unsorted_indices is not None:
            h_n = h_n.index_select(1, input.unsorted_indices)
        return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), h_n
    input, hx, batch_first, unbatched = check_sequence_input(input, hx, batch_first)
    check_input_features(input, input_size, like)
    x = input.transpose(0, 1) if batch_first else input
    if lengths is not None:
        lengths = check_lengths(lengths, x.shape[1], x.shape[0], x.device)
    output, h_n = run(x, hx, lengths)
    if batch_first:
        output = output.transpose(0, 1)
    if unbatched:
        return output.squeeze(1), h_n.squeeze(1)
    return output, h_n
