"""The console line of an epoch: top-5 only where it says something."""

from dali_cutmix.train.run_record import epoch_line

RECORD = dict(epoch=3, train_loss=1.23456, val_top1=40.0, val_top5=90.0, images_per_s=123.4, data_wait=0.02, lr=0.1,
              epoch_time_s=12.34)


def test_top5_is_shown_from_10_classes_on():
    assert epoch_line(RECORD, 10, 1000) == ("epoch 3/10  train loss 1.2346  val top-1 40.00%  top-5 90.00%  "
                                            "123 img/s  data wait 2%  lr 0.1  12.3s")
    assert epoch_line(RECORD, 10, 10).count("top-5 90.00%") == 1
    assert epoch_line(RECORD, 10, 6) == "epoch 3/10  train loss 1.2346  val top-1 40.00%  123 img/s  data wait 2%  " \
                                        "lr 0.1  12.3s"
