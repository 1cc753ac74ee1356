"""fetalhc: fetal head segmentation and head-circumference measurement in 2D ultrasound."""

__version__ = "0.1.0"
