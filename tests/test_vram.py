from dali_pipes._vram import batch_size_for, bytes_per_video


def test_bytes_per_video_worked_example():
    assert bytes_per_video(frames=64, width=1920, height=1080, size=256) == 2 * (
        64 * 1080 * 1920 * 3 + 2 * 64 * 3 * 256 * 256 * 4
    )


def test_batch_size_uses_40_percent_of_free_and_caps():
    per = bytes_per_video(frames=64, width=1280, height=720, size=256)
    assert batch_size_for(int(per * 2 / 0.4), frames=64, width=1280, height=720, size=256, cap=4) == 2
    assert batch_size_for(80 << 30, frames=64, width=1280, height=720, size=256, cap=4) == 4
    assert batch_size_for(80 << 30, frames=64, width=1280, height=720, size=256, cap=16) == 16
    # never zero, even when nothing fits
    assert batch_size_for(1 << 20, frames=64, width=3840, height=2160, size=256, cap=4) == 1
    # larger frames -> smaller batches for the same free memory
    free = 3 << 30
    small = batch_size_for(free, frames=64, width=640, height=360, size=256, cap=64)
    large = batch_size_for(free, frames=64, width=1920, height=1080, size=256, cap=64)
    assert small > large >= 1
