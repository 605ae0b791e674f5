"""sar_jax.parity.losses: SSIM, the combined loss, PSNR and per-image metrics vs the reference."""

from __future__ import annotations

from sar_jax.parity.losses import check_losses, check_ssim


def test_ssim_synthetic_pairs(check_rows):
    check_rows(check_ssim(None))


def test_ssim_real_sar_pairs(check_rows, shared_sar_dir):
    rows = check_ssim(shared_sar_dir)
    check_rows(rows)
    assert sum("real SAR" in r["quantity"] for r in rows) >= 7


def test_combined_loss_psnr_and_per_image_metrics(check_rows, shared_sar_dir):
    check_rows(check_losses(shared_sar_dir))
