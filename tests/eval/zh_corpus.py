"""A small Chinese retrieval set written for the project (BEIR layout), for fusion robustness.

The bundled embedder (all-MiniLM-L6-v2) is English-only, so on this set the
dense retriever is weak and BM25 (jieba) is strong: the default fusion must
not fall far below the better retriever.
"""

from __future__ import annotations

import json
from pathlib import Path

DOCS = {
    "d1": ("龙井茶", "西湖龙井是产于杭州西湖一带的绿茶，以色绿、香郁、味甘、形美著称。"),
    "d2": ("普洱茶", "普洱茶属于黑茶，经过后发酵，存放时间越长，口感往往越醇厚。"),
    "d3": ("大熊猫", "大熊猫主要生活在四川、陕西和甘肃的山区，以竹子为主要食物。"),
    "d4": ("长城", "长城始建于春秋战国时期，明长城东起山海关，西至嘉峪关。"),
    "d5": ("高速铁路", "中国高速铁路运营里程世界第一，复兴号动车组最高运营时速达到三百五十公里。"),
    "d6": ("围棋", "围棋起源于中国，棋盘由纵横各十九条线组成，黑白双方轮流落子。"),
    "d7": ("饺子", "饺子是中国北方春节的传统食品，常见馅料有猪肉白菜和韭菜鸡蛋。"),
    "d8": ("京剧", "京剧形成于清代北京，角色分为生、旦、净、丑四大行当。"),
    "d9": (
        "丝绸之路",
        "丝绸之路是古代连接中国与地中海地区的贸易通道，张骞出使西域开辟了这条道路。",
    ),
    "d10": ("太阳能电池", "太阳能电池利用光伏效应把阳光直接转换为电能，单晶硅电池效率较高。"),
    "d11": ("针灸", "针灸是中医的重要疗法，通过刺激人体穴位来调节气血。"),
    "d12": ("春节", "春节是农历新年，人们贴春联、放鞭炮、吃年夜饭，寓意辞旧迎新。"),
    "d13": ("造纸术", "东汉蔡伦改进了造纸术，用树皮、麻头和破布制成了价格低廉的纸张。"),
    "d14": ("长江", "长江是中国第一长河，全长约六千三百公里，流经十一个省级行政区。"),
    "d15": ("桂林山水", "桂林以喀斯特地貌闻名，漓江两岸奇峰林立，有桂林山水甲天下之称。"),
    "d16": ("兵马俑", "秦始皇陵兵马俑于一九七四年被发现，被誉为世界第八大奇迹。"),
}
QUERIES = {
    "q1": ("杭州出产的著名绿茶是什么", "d1"),
    "q2": ("哪种茶存放越久口感越醇厚", "d2"),
    "q3": ("大熊猫吃什么", "d3"),
    "q4": ("明长城的东端和西端在哪里", "d4"),
    "q5": ("复兴号动车组的最高时速", "d5"),
    "q6": ("围棋棋盘有多少条线", "d6"),
    "q7": ("春节吃的饺子有哪些馅料", "d7"),
    "q8": ("京剧的四大行当", "d8"),
    "q9": ("谁开辟了丝绸之路", "d9"),
    "q10": ("光伏效应如何产生电能", "d10"),
    "q11": ("蔡伦改进了什么技术", "d13"),
    "q12": ("兵马俑是哪一年发现的", "d16"),
}


def write_zh_dataset(folder: Path) -> Path:
    """Write the set in BEIR format under ``folder`` and return it."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for doc_id, (title, text) in DOCS.items():
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
        for qid, (text, _) in QUERIES.items():
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, (_, d) in QUERIES.items()]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder
