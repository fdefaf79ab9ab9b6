//! The model's ends (image.wgsl): mean shift and padding in, pixel shuffle and crop out,
//! and the backward of the latter (phase 2).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{grid_1d, Dispatch, GpuBuffer, GpuContext, Shader};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ImageParams {
    b: u32,
    ch: u32,
    h: u32,
    w: u32,
    hp: u32,
    wp: u32,
    scale: u32,
    img_range: f32,
    mean: [f32; 4],
}

/// Geometry of the image at the network's ends.
#[derive(Clone, Copy, Debug)]
pub struct ImageShape {
    pub b: usize,
    pub ch: usize,
    pub h: usize,
    pub w: usize,
    pub hp: usize,
    pub wp: usize,
    pub scale: usize,
    pub img_range: f32,
    pub mean: [f32; 3],
}

impl ImageShape {
    fn params(&self) -> ImageParams {
        ImageParams {
            b: self.b as u32,
            ch: self.ch as u32,
            h: self.h as u32,
            w: self.w as u32,
            hp: self.hp as u32,
            wp: self.wp as u32,
            scale: self.scale as u32,
            img_range: self.img_range,
            mean: [self.mean[0], self.mean[1], self.mean[2], 0.0],
        }
    }
}

/// Planar (b, ch, h, w) image → padded, mean-shifted tokens (b, hp, wp, ch).
pub fn prepare(ctx: &GpuContext, src: &GpuBuffer, dst: &GpuBuffer, s: &ImageShape) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::Image, "prepare", &[]);
    let n = s.b * s.hp * s.wp * s.ch;
    Dispatch::new(ctx, pipeline, &s.params(), &[src.bind(), dst.bind()], grid_1d(n), "input")
}

/// `finish`'s backward: the planar output's gradient `d_out` back to the upsampling
/// conv's (b, hp, wp, ch·s²) tokens `d_up` (0 where the crop dropped a pixel).
pub fn finish_backward(ctx: &GpuContext, d_out: &GpuBuffer, d_up: &GpuBuffer, s: &ImageShape) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::Image, "finish_backward", &[]);
    let n = s.b * s.hp * s.wp * s.ch * s.scale * s.scale;
    Dispatch::new(ctx, pipeline, &s.params(), &[d_out.bind(), d_up.bind()], grid_1d(n), "output")
}

/// Upsampler conv output tokens (b, hp, wp, ch·s²) → cropped planar (b, ch, s·h, s·w).
pub fn finish(ctx: &GpuContext, src: &GpuBuffer, dst: &GpuBuffer, s: &ImageShape) -> Dispatch {
    let pipeline = ctx.pipeline(Shader::Image, "finish", &[]);
    let n = s.b * s.ch * s.h * s.scale * s.w * s.scale;
    Dispatch::new(ctx, pipeline, &s.params(), &[src.bind(), dst.bind()], grid_1d(n), "output")
}
