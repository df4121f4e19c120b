"""The corpus cleaning rules the shipped Korean model trains on (gptterm/training/corpus.py)."""

from gptterm.training.corpus import clean_korean, hangul_share


def test_korean_prose_keeps_sentences_and_writes_product_names_in_hangul():
    text = ("LibreOffice에서 문서를 열 때 이 옵션을 선택하십시오.\n"
            "Title is: 대화 상자 편집기\n"
            "도구 - 매크로 - 대화 상자 관리 를 선택한 다음 확인을 누르십시오.\n"
            "표 1\n"
            "OpenOffice 파일도 리브레오피스 문서처럼 열 수 있습니다.\n")
    lines = clean_korean(text).splitlines()
    assert lines == ["리브레오피스에서 문서를 열 때 이 옵션을 선택하십시오.",
                     "오픈오피스 파일도 리브레오피스 문서처럼 열 수 있습니다."]
    assert all(hangul_share(line) == 1.0 for line in lines)
