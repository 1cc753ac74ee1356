"""Stage 1, input and output: atomic files, run-folder locks, image and DICOM reading."""
