//! Images, colour conversion, metrics, MATLAB bicubic and benchmark datasets.
