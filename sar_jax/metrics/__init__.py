"""Image-quality and SAR metrics (SSIM/MS-SSIM, MSE/PSNR, ENL, mean preservation, bit rates)."""
