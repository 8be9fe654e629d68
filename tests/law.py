"""Gross-weight limits written from the text of 62号令 Art. 3 (4)-(8), not from the policy YAML:
tests compare the code and the data against this."""

LAW_LIMIT_KG = {
    "T2": 18000,  # 二轴货车
    "T3": 25000,  # 三轴货车
    "C3": 27000,  # 三轴汽车列车
    "T4": 31000,  # 四轴货车
    "C4": 36000,  # 四轴汽车列车
    "C5": 43000,  # 五轴汽车列车
    "C6": 49000,  # 六轴及以上汽车列车
    "C6S": 46000,  # 六轴及以上, 牵引车驱动轴为单轴
}
