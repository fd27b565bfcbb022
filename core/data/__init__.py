"""Datasets: video folders (Panda-70M / WebVid layouts), image + depth folders, synthetic scenes."""
