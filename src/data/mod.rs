//! Images, colour conversion, metrics, MATLAB bicubic, benchmark datasets, and the
//! checks and atomic writes of output files.

pub mod bicubic;
pub mod dataset;
pub mod image_io;
pub mod metrics;
pub mod output;

pub use bicubic::{downscale_matlab, imresize_u8, upscale_matlab};
pub use dataset::{benchmark_pairs, dataset_name, list_images, load_downscaled, lr_note, LrSource, Pair};
pub use image_io::{is_image_file, load_rgb, load_rgb_u8, output_losses, png_has_text, save_png, save_png_with_text, OutputLosses, RgbImage, RgbU8, UPSCALE_SOURCE};
pub use output::{check_model_file_name, check_not_an_input, check_outside, check_output_file, resolved, write_atomic};
pub use metrics::{psnr_y, ssim_y, y_channel};
